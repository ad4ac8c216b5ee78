"""Generation (paper section 5.3, Figs. 9-12): synthetic galaxies, the interpolation tour through
the components, latent traversals, deblending by interpolation, and interpolation between two
galaxies.

Every latent vector is decoded by `model.inference.decode`, in blocks of exactly BLOCK rows (the
last zero-padded) and clipped to [0, 1]; synthetic block b draws its components and noise from
its own generator seeded by (seed, b). So a synthetic image depends only on the seed, the
settings and its index: never on the chunk size, on how many images are made, or on what else
is generated.

All functions take a loaded model (`model.io.load_model`), and model-ready pixels (N, C, H, W)
(uint8 or floats in [0, 1]) or their embeddings mu (N, J) and gamma (N, K) from
`model.inference.model_outputs`.

    latents.py   sampling from the mixture, interpolation, traversal, deblending
    tour.py      the shortest tour through the components' most probable members
    figures.py   the figures of all of them, and the report's hook (Figs. 9-11)
    writers.py   synthetic images and their table streamed to files; arrays beside figures
    run.py       the `astrovader generate` command
"""
