"""`astrovader report`: every table and figure of the paper's sections 4-5 for one trained run,
plus what the paper could not measure (scores against known classes, the spread of the choice
of K), as PNG files and one self-contained HTML page (figures embedded as data URIs).

    build_report("runs/gz1", "runs/gz1/report", ReportOptions(votes="gz2_hart16.csv", subset="0,3,5"))
"""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from astrovader.analysis import clusters, figures, metrics, shift, truth
from astrovader.analysis.choose_k import check_settings, choose_k
from astrovader.analysis.galaxy_zoo import VoteSettings, read_votes, vote_counts
from astrovader.analysis.objects import (
    ImageSource, Objects, objects_from_cache, objects_from_predictions,
)
from astrovader.errors import AstroVaDErError
from astrovader.generate.figures import report_figures
from astrovader.io import write_json_atomic, write_text_atomic
from astrovader.model.inference import decode
from astrovader.runs import Run, RunFolder

LABEL_COLUMNS = ("label_name", "gz1_class_name", "label", "gz1_class")
# Per-class purest component: only components of at least this many members (or 1 % of the
# objects) compete, so that a one-galaxy component is not reported as 100 % pure.
MIN_COMPONENT_SIZE = 10


@dataclass
class ReportOptions:
    predictions: Path | None = None  # an `astrovader predict` table; None: encode the cache split
    data: Path | None = None  # a prepared cache; None: the run's own
    split: str = "test"
    votes: Path | None = None  # Galaxy Zoo 2 vote catalogue
    vote_settings: VoteSettings = field(default_factory=VoteSettings)
    labels: str | None = None  # column of known classes; None: the first of LABEL_COLUMNS present
    subset: str | None = None  # components for Fig. 8 and the Galaxy Zoo comparison, e.g. "0,3,5"
    seed: int = 0
    examples: int = 8  # galaxies per gallery row and in Fig. 3
    map_points: int = 1000  # objects in the 2-D latent map (t-SNE time grows fast with it)
    choose_k_fits: int = 10  # 0 skips choosing K
    choose_k_batch: int = 2000
    max_components: int = 30
    threshold: float = 0.01


@dataclass
class ReportSummary:
    path: Path
    figures: int
    objects: int
    seconds: float
    headline: dict

    def line(self) -> str:
        return f"report of {self.objects} objects, {self.figures} figures, in {self.seconds:.1f} s -> {self.path}"


class Page:
    """Collects sections of HTML; figures are written as PNGs and embedded from the same bytes."""

    def __init__(self, out: Path):
        self.out = out
        self.sections: list[tuple[str, list[str]]] = []
        self.figure_count = 0

    def section(self, title: str) -> list[str]:
        self.sections.append((title, []))
        return self.sections[-1][1]

    def figure(self, name: str, figure, caption: str) -> str:
        data = figures.save_figure(figure, self.out / f"{name}.png")
        self.figure_count += 1
        encoded = base64.b64encode(data).decode("ascii")
        return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    @staticmethod
    def table(frame: pd.DataFrame, caption: str = "", index: bool = True) -> str:
        body = frame.to_html(index=index, border=0, na_rep="-", float_format=lambda value: f"{value:.3g}")
        return f"<p class='caption'>{html.escape(caption)}</p>{body}" if caption else body

    @staticmethod
    def note(text: str) -> str:
        return f"<p class='note'>{html.escape(text)}</p>"

    def render(self, title: str, header: str) -> str:
        contents = "".join(
            f"<li><a href='#s{i}'>{html.escape(name)}</a></li>" for i, (name, _) in enumerate(self.sections)
        )
        body = "".join(
            f"<section id='s{i}'><h2>{html.escape(name)}</h2>{''.join(parts)}</section>"
            for i, (name, parts) in enumerate(self.sections)
        )
        return (
            f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{header}"
            f"<nav><ol>{contents}</ol></nav>{body}</body></html>\n"
        )


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}"
    "th,td{border-bottom:1px solid #ddd;padding:2px 8px;text-align:right}"
    "figure{margin:1em 0}img{max-width:100%}figcaption,.caption{font-size:0.85em;color:#555}"
    ".note{color:#8a5a00}dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dt{font-weight:bold}"
)


@dataclass
class Context:
    run: Run
    objects: Objects
    images: ImageSource
    options: ReportOptions
    page: Page
    subset: list[int] | None
    label_column: str | None
    votes: pd.DataFrame | None
    headline: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)


def build_report(run_dir: str | Path, out: str | Path, options: ReportOptions | None = None,
                 progress: Callable[[int, int], None] | None = None) -> ReportSummary:
    """Write out/*.png, out/summary.json and out/report.html for the run in `run_dir`."""
    started = time.perf_counter()
    options = options or ReportOptions()
    out = Path(out)
    run = RunFolder(run_dir).open()
    subset = clusters.parse_subset(options.subset, run.model.prior.n_components)
    cache = run.cache(options.data)
    if options.predictions is not None:
        objects = objects_from_predictions(options.predictions, options.split)
    elif cache is None:
        raise AstroVaDErError(f"{run_dir}: the run records no prepared cache; give --data CACHE or --predictions FILE")
    else:
        objects = objects_from_cache(run.model, cache, options.split)
    if len(objects) < 2:
        raise AstroVaDErError(f"{objects.source}: {len(objects)} objects; a report needs at least 2")
    # Inputs that can be wrong are checked before any slow step.
    labels = label_column(objects.table, options.labels)
    votes = read_votes(options.votes, options.vote_settings) if options.votes is not None else None
    if options.choose_k_fits:
        check_settings(options.choose_k_fits, options.choose_k_batch, options.max_components, options.threshold)
    images = ImageSource(objects.table, cache, run.config.data)
    context = Context(run, objects, images, options, Page(out), subset, labels, votes)
    for done, step in enumerate(SECTIONS, start=1):
        step(context)
        if progress is not None:
            progress(done, len(SECTIONS))
    context.headline["seconds"] = round(time.perf_counter() - started, 1)
    write_json_atomic(out / "summary.json", {"headline": context.headline, **context.tables})
    title = f"AstroVaDEr report: {run.folder.resolve().name}"
    write_text_atomic(out / "report.html", context.page.render(title, header(context)))
    return ReportSummary(out / "report.html", context.page.figure_count, len(objects),
                         time.perf_counter() - started, context.headline)


def header(context: Context) -> str:
    run, objects, headline = context.run, context.objects, context.headline
    config = run.config
    data = run.info.get("data", {})
    facts = {
        "run": str(run.folder.resolve()),
        "preset": config.preset,
        "data": data.get("path") or data.get("cache") or data.get("kind", "unknown"),
        "analysed objects": f"{len(objects)} from {objects.source}",
        "input": f"{config.data.image_size} px {config.data.color}, {config.data.scaling} scaling",
        "network": f"{config.model.backbone}, J = {config.model.latent_dim}, K = {config.model.n_components}",
        "parameters": f"{total:,}" if isinstance(total := run.metadata.get("parameters", {}).get("total"), int) else "unknown",
        "precision": run.info.get("runtime", {}).get("precision", "unknown"),
        "epochs": run.metadata.get("epochs", config.train.total_epochs),
    }
    facts.update({name.replace("_", " "): f"{value:.4g}" if isinstance(value, float) else value
                  for name, value in headline.items() if name != "seconds"})
    facts.update({"notes": "; ".join(objects.notes)} if objects.notes else {})
    items = "".join(f"<dt>{html.escape(str(key))}</dt><dd>{html.escape(str(value))}</dd>" for key, value in facts.items())
    return f"<dl>{items}</dl>"


# -- sections ----------------------------------------------------------------------------------
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


def label_column(table: pd.DataFrame, requested: str | None) -> str | None:
    if requested is not None:
        if requested not in table.columns:
            raise AstroVaDErError(f"--labels {requested!r}: no such column (columns: {', '.join(map(str, table.columns))})")
        return requested
    return next((name for name in LABEL_COLUMNS if name in table.columns), None)


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


SECTIONS = (training, input_shift, reconstructions, cluster_tables, galleries, subset_galleries, known_classes,
            simulation_truth, choosing_k,
            galaxy_zoo, generation)
