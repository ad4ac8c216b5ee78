"""Clustering quality against known classes, over seeds, on held-out images: astrovader's VaDE
with the conv and the MLP backbone, its two-stage baseline (the same autoencoder, then a
GaussianMixture), k-means on PCA of the pixels, and ClustPy's VaDE (benchmarks.clustpy_runner).

Every method sees the same prepared pixels (`astrovader prepare` with the method's data
settings), fits on the same training rows and is scored with `label_scores` on the same
held-out rows, with K = the number of classes. Our models train through `train_run` (the path
`astrovader train` takes) with a callback that scores the held-out set after every epoch, so the
time to reach the final accuracy is measured, not guessed.

Each (dataset, method, seed) run writes results/clustering/<dataset>-<method>-seed<N>.json and
is reused by a later invocation with the same settings (a killed full run resumes);
`summary_table` turns the records of one budget into results/clustering.md (quick runs: all
under results/quick/).

    datasets.py   the data sets, budgets and prepared pixels
    methods.py    the methods: ours through train_run, the pixel baselines
    records.py    one record per (data set, method, seed), made or reused
    tables.py     the records as results/clustering.md
"""
