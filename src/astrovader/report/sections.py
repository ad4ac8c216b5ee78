"""The report's sections, in page order (`SECTIONS`): each adds its tables and figures to the
page and its headline figures to the summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from astrovader.analysis import clusters, figures, metrics, shift, sources, truth
from astrovader.analysis.choose_k import choose_k
from astrovader.analysis.galaxy_zoo import vote_counts
from astrovader.generate.figures import report_figures
from astrovader.model.inference import decode
from astrovader.report.context import Context
from astrovader.report.page import Page
from astrovader.runs import RunFolder

# Per-class purest component: only components of at least this many members (or 1 % of the
# objects) compete, so that a one-galaxy component is not reported as 100 % pure.
MIN_COMPONENT_SIZE = 10
SOURCE_OBJECTS = 2000  # objects (a seeded sample) searched for secondary sources: seconds, bounded memory


def training(context: Context) -> None:
    parts = context.page.section("Training losses (Fig. 2)")
    path = RunFolder(context.run.folder).metrics_file
    if not path.exists():
        parts.append(Page.note(f"{path} not found: no loss curves"))
        return
    frame = pd.read_csv(path)
    parts.append(context.page.figure("fig02_losses", figures.loss_curves(frame),
                                     "Mean losses per epoch: train solid, validation dashed; phases shaded."))
    last = frame.iloc[-1]
    context.headline["final validation loss"] = float(last.get("validation_total", np.nan))


def input_shift(context: Context) -> None:
    """How the analysed objects compare with the training split (analysis.shift)."""
    parts = context.page.section("Inputs against the training data")
    objects, reference = context.objects, context.run.metadata.get("training_reference")
    if objects.mse is None or objects.log_likelihood is None or reference is None:
        missing = "no training reference in model.json (an older model)" if reference is None else "no mse / log_likelihood"
        parts.append(Page.note(f"{missing}: inputs not compared with the training data"))
        return
    columns = shift.shift_columns(objects.log_likelihood, objects.mse, reference)
    cache = context.images.cache
    result = shift.shift_report(objects.components, columns["ood"], reference, context.run.metadata.get("training_inputs"),
                                cache.geometry if cache is not None else None)
    context.tables["input_shift"] = result
    context.headline["flagged unlike training"] = result["flagged"]
    table = pd.DataFrame([{
        "objects": result["inputs"], "flagged (ood)": f"{result['flagged']:.1%}",
        "median log-likelihood quantile": f"{np.nanmedian(columns['log_likelihood_quantile']):.2f}",
        "median MSE quantile": f"{np.nanmedian(columns['mse_quantile']):.2f}",
        "largest component": result["largest_component"], "its share": f"{result['largest_share']:.1%}",
        "its training share": f"{result['largest_training_share']:.1%}",
    }])
    parts.append(Page.table(table, f"Each object's log-likelihood under the mixture and reconstruction MSE placed among "
                                   f"those of {reference['rows']} training objects (quantiles: 0.5 is typical). Flagged: "
                                   f"likelihood below the training 1st percentile or MSE above the 99th (by chance "
                                   f"{shift.EXPECTED_SHARE:.0%}).", index=False))
    if result["warning"]:
        parts.append(Page.note(f"Warning: {result['warning']}."))


def reconstructions(context: Context) -> None:
    parts = context.page.section("Reconstructions (Figs. 3-4)")
    objects, options = context.objects, context.options
    rng = np.random.default_rng(options.seed)
    chosen = np.sort(rng.choice(len(objects), min(options.examples, len(objects)), replace=False))
    inputs = context.images.pixels(chosen)
    if inputs is None:
        parts.append(Page.note("input images unavailable (ids not in the cache and no file_loc column): no Figs. 3-4"))
        return
    outputs = decode(context.run.model, objects.mu[chosen])
    ids = objects.table["id_str"].to_numpy()
    rows = [figures.ImageRow("input", inputs), figures.ImageRow("reconstruction", outputs),
            figures.ImageRow("residual", inputs - outputs, residual=True)]
    parts.append(context.page.figure("fig03_reconstructions", figures.image_grid(rows, list(ids[chosen])),
                                     "Random objects: input, reconstruction of mu_z (clipped to [0, 1]), residual (input - reconstruction)."))
    if objects.mse is None:
        parts.append(Page.note("no mse column in the predictions: no best/worst figure"))
        return
    context.headline["mean mse"] = float(objects.mse.mean())
    count = min(5, len(objects) // 2)
    order = np.argsort(objects.mse, kind="stable")
    best, worst = order[:count], order[::-1][:count]
    inputs = context.images.pixels(np.concatenate([best, worst]))
    if inputs is None:
        parts.append(Page.note("input images of the best or worst objects unavailable: no Fig. 4"))
        return
    outputs = decode(context.run.model, objects.mu[np.concatenate([best, worst])])
    grid = []
    for name, part in (("best", slice(0, count)), ("worst", slice(count, None))):
        grid += [figures.ImageRow(f"{name}: input", inputs[part]),
                 figures.ImageRow(f"{name}: reconstruction", outputs[part])]
    titles = [f"{objects.mse[b]:.2g} / {objects.mse[w]:.2g}" for b, w in zip(best, worst)]
    parts.append(context.page.figure("fig04_best_worst", figures.image_grid(grid, titles),
                                     "Lowest and highest mean squared error per pixel (titles: best / worst MSE)."))


def secondary_sources(context: Context) -> None:
    """Companions, neighbours and stars in the inputs, and the share the reconstructions keep."""
    parts = context.page.section("Secondary sources in the reconstructions")
    objects, options = context.objects, context.options
    rng = np.random.default_rng(options.seed)
    chosen = np.sort(rng.choice(len(objects), min(SOURCE_OBJECTS, len(objects)), replace=False))
    inputs = context.images.pixels(chosen)
    if inputs is None:
        parts.append(Page.note("input images unavailable: secondary sources not searched"))
        return
    found = sources.source_recovery(inputs, decode(context.run.model, objects.mu[chosen]))
    summary = sources.recovery_summary(found, len(chosen))
    table = sources.recovery_table(found)
    context.headline["secondary sources kept"] = summary["kept"]
    context.tables["secondary_sources"] = {**summary, "by_height": table.reset_index().astype({"height": str}).to_dict(orient="records")}
    parts.append(Page.table(table, f"Sources besides the central galaxy (peaks at least {sources.DETECTION_SIGMA:g} noise "
                                   f"sigmas above the sky, beyond {sources.CENTRE_FRACTION:g} of the side from the centre) "
                                   f"in {len(chosen)} objects ({summary['with_sources']:.1%} have one), and the share "
                                   f"the reconstruction of mu_z keeps within {sources.MATCH_PX:g} px, by height."))


def cluster_tables(context: Context) -> None:
    parts = context.page.section("Clusters (Table 2, Fig. 5, latent map)")
    objects, options = context.objects, context.options
    table = clusters.component_table(objects.mu, objects.gamma)
    scores = clusters.cluster_scores(objects.mu, objects.components, seed=options.seed)
    context.headline.update(scores)
    context.tables["components"] = table.reset_index().to_dict(orient="records")
    context.tables["cluster_scores"] = scores
    parts.append(Page.table(table, "Table 2: objects per most probable component, objects with gamma above each "
                                   "threshold, mean simplified silhouette (eq. 18 per sample) on mu_z."))
    parts.append(Page.table(pd.DataFrame([scores]), "Scores on mu_z over all analysed objects.", index=False))
    overlap = clusters.overlap_matrix(objects.gamma)
    context.tables["overlap"] = overlap.round(6).to_numpy().tolist()
    parts.append(context.page.figure("fig05_overlap", figures.overlap_heatmap(overlap),
                                     "Mean gamma of each component (vertical) over the objects whose most probable "
                                     "component is each component (horizontal)."))
    if len(objects) < 5:
        parts.append(Page.note(f"{len(objects)} objects: too few for a latent map"))
        return
    positions, coordinates, method = clusters.latent_map(objects.mu, options.seed, options.map_points)
    parts.append(context.page.figure("latent_map", figures.latent_scatter(coordinates, objects.components[positions], method),
                                     f"{method} of mu_z for {len(positions)} objects (seeded subsample)."))


def galleries(context: Context) -> None:
    parts = context.page.section("Components (Figs. 6-7)")
    parts += gallery_figures(context, context.objects.components, None, "fig06-07")


def subset_galleries(context: Context) -> None:
    subset = context.subset
    if subset is None:
        return
    parts = context.page.section(f"Components {', '.join(map(str, subset))} only (Fig. 8)")
    labels = clusters.assignments(context.objects.gamma, subset)
    moved = int((labels != context.objects.components).sum())
    counts = pd.Series(labels).value_counts().reindex(subset, fill_value=0).rename("objects").to_frame()
    counts["from other components"] = [int(((labels == c) & (context.objects.components != c)).sum()) for c in subset]
    counts.index.name = "component"
    parts.append(Page.table(counts, f"Every object re-labelled by its most probable component among the subset "
                                    f"({moved} objects change label)."))
    parts += gallery_figures(context, labels, subset, "fig08")


def gallery_figures(context: Context, labels: np.ndarray, components: list[int] | None, prefix: str) -> list[str]:
    objects, options = context.objects, context.options
    chosen = clusters.gallery_members(objects.gamma, labels, options.examples, options.seed, components)
    parts = []
    for kind, members in chosen.items():
        sizes = {component: int((labels == component).sum()) for component in members}
        positions = np.concatenate(list(members.values()))
        splits = np.cumsum([len(part) for part in members.values()])[:-1]
        views = {"reconstructions": decode(context.run.model, objects.mu[positions])}
        inputs = context.images.pixels(positions)
        if inputs is not None:
            views["inputs"] = inputs
        for view, images in views.items():
            rows = [figures.ImageRow(f"{component} ({sizes[component]})", part)
                    for component, part in zip(members, np.split(images, splits))]
            name = f"{prefix}_{kind.replace(' ', '_')}_{view}"
            parts.append(context.page.figure(name, figures.image_grid(rows),
                                             f"{kind.capitalize()} members of each component ({view}); "
                                             "row label: component (members)."))
    return parts


def known_classes(context: Context) -> None:
    table, column = context.objects.table, context.label_column
    if column is None:
        return
    parts = context.page.section(f"Known classes: {column}")
    known = table[column].notna().to_numpy()
    if not known.all():
        parts.append(Page.note(f"{int((~known).sum())} objects have no {column}; scored on the other {int(known.sum())}"))
    labels = table[column][known].to_numpy()  # without the gaps: nullable integers stay integers
    components = context.objects.components[known]
    scores = metrics.label_scores(labels, components)
    context.headline.update({f"{name} ({column})": value for name, value in scores.items()})
    context.tables["label_scores"] = {"column": column, **scores}
    parts.append(Page.table(pd.DataFrame([scores]), "Accuracy (Hungarian matching), NMI, ARI, purity.", index=False))
    table = metrics.contingency(labels, components)
    context.tables["class_component"] = {str(name): row.to_dict() for name, row in table.iterrows()}
    parts.append(Page.table(table, "Objects per class (rows) and component (columns)."))
    parts.append(Page.table(metrics.component_purity(labels, components), "Per component: majority class and purity."))
    min_size = max(MIN_COMPONENT_SIZE, len(labels) // 100)
    best = metrics.class_best_components(labels, components, min_size=min_size)
    context.tables["class_best_components"] = best.reset_index().astype({"class": str}).to_dict(orient="records")
    parts.append(Page.table(best, f"Per class: its share of all objects, the purest component for it among those of at "
                                  f"least {min_size} members, its purity, its size and the fraction of the class it "
                                  "holds (completeness)."))


def simulation_truth(context: Context) -> None:
    """Against the simulation's truth (truth.parquet beside the catalogue the cache was made
    from): what the components follow (morphology, companions) and what they should not (S/N,
    flux, position angle), and each component's mean of every attribute."""
    cache = context.images.cache
    source = Path(cache.meta.get("source", "")) if cache is not None else None
    path = source.parent / "truth.parquet" if source is not None else None
    if path is None or not path.exists():
        return
    ids = context.objects.table["id_str"].to_numpy()
    parts = context.page.section("Against the simulation's truth")
    scores = truth.attribute_scores(context.objects.components, ids, path)
    context.tables["truth_scores"] = scores
    context.headline.update({f"{name} (truth)": value for name, value in scores.items() if name.startswith("nmi_")})
    parts.append(Page.table(pd.DataFrame([scores]), "NMI of the components against the morphology class and "
                                                   "has-companion (wanted high) and against S/N, flux and position-angle "
                                                   "bins (wanted low; mi_: mutual information in nats).", index=False))
    means = truth.component_means(context.objects.components, ids, path)
    context.tables["truth_component_means"] = means.reset_index().to_dict(orient="records")
    parts.append(Page.table(means.round(3), "Per component: objects, the share of each morphology and of galaxies with "
                                           "companions, and the mean of each truth attribute."))


def choosing_k(context: Context) -> None:
    options, objects = context.options, context.objects
    if options.choose_k_fits == 0:
        return
    parts = context.page.section("Choosing K (section 4.1)")
    batch = min(options.choose_k_batch, len(objects))
    if batch < options.max_components:
        parts.append(Page.note(f"{len(objects)} objects: too few for {options.max_components}-component fits"))
        return
    result = choose_k(objects.mu, options.choose_k_fits, batch, options.max_components, options.threshold, options.seed)
    context.headline["recommended K"] = result.recommended
    context.tables["choose_k"] = result.to_dict()
    parts.append(Page.table(result.distribution(), f"Dirichlet-process mixtures on the analysed objects' mu_z: "
                                                  f"{result.summary()} (the model has K = {objects.gamma.shape[1]})."))
    parts.append(context.page.figure("choose_k", figures.count_histogram(result.counts, result.recommended, result.threshold),
                                     "Components with non-negligible weight per fit."))


def galaxy_zoo(context: Context) -> None:
    options, objects, subset = context.options, context.objects, context.subset
    if context.votes is None:
        return
    parts = context.page.section("Galaxy Zoo votes (Figs. 13-14)")
    labels = clusters.assignments(objects.gamma, subset)
    counts = vote_counts(objects.table["id_str"], labels, context.votes, options.vote_settings, subset)
    context.tables["galaxy_zoo"] = counts.reset_index().to_dict(orient="records")
    settings = options.vote_settings
    parts.append(Page.table(counts, f"{int(counts['with_votes'].sum())} of {len(objects)} objects have votes. "
                                    f"smooth / featured: debiased fraction > {settings.smooth_threshold:g} / "
                                    f"{settings.featured_threshold:g} with at least {settings.min_smooth_votes} votes; "
                                    f"edge-on / not: featured and > {settings.edge_on_threshold:g} with at least "
                                    f"{settings.min_edge_on_votes} votes."
                                    + (" Components restricted to the subset." if subset else "")))
    examples = example_reconstructions(context, labels, list(counts.index))
    parts.append(context.page.figure("fig13_smooth_featured", figures.vote_histogram(
        counts, "featured", "smooth", examples, "GZ2 featured (blue) and smooth (red)"),
        "Per component: featured and smooth galaxies; below, the most probable member (reconstruction)."))
    parts.append(context.page.figure("fig14_edge_on", figures.vote_histogram(
        counts, "edge_on", "not_edge_on", examples, "GZ2 featured: edge-on (blue) and not (red)"),
        "Per component, among featured galaxies: edge-on and not edge-on."))


def example_reconstructions(context: Context, labels: np.ndarray, components: list[int]) -> dict[int, np.ndarray]:
    chosen = clusters.gallery_members(context.objects.gamma, labels, 1, context.options.seed, components)["most probable"]
    present = [component for component in components if len(chosen[component])]
    if not present:
        return {}
    images = decode(context.run.model, context.objects.mu[[chosen[c][0] for c in present]])
    return dict(zip(present, images))


def generation(context: Context) -> None:
    parts = context.page.section("Generation (Figs. 9-11)")
    for name, figure, caption in report_figures(context.run.model, context.objects.mu, context.objects.gamma,
                                                context.options.seed):
        parts.append(context.page.figure(f"generation_{name}", figure, caption))
    parts.append(Page.note("Deblending (Fig. 12) needs a chosen galaxy and clean component: `astrovader generate --deblend`."))


SECTIONS = (training, input_shift, reconstructions, secondary_sources, cluster_tables, galleries, subset_galleries, known_classes,
            simulation_truth, choosing_k,
            galaxy_zoo, generation)
