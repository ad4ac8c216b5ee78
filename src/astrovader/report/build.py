"""`build_report`: the report of one trained run, section by section, into PNGs, summary.json
and report.html."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


from astrovader.analysis import clusters
from astrovader.analysis.choose_k import check_settings
from astrovader.analysis.galaxy_zoo import read_votes
from astrovader.analysis.objects import ImageSource, objects_from_cache, objects_from_predictions
from astrovader.atomic import write_json_atomic, write_text_atomic
from astrovader.data.catalogue import label_column
from astrovader.errors import AstroVaDErError
from astrovader.report.context import Context, ReportOptions
from astrovader.report.page import Page
from astrovader.report.sections import SECTIONS
from astrovader.runs import RunFolder

@dataclass
class ReportSummary:
    path: Path
    figures: int
    objects: int
    seconds: float
    headline: dict

    def line(self) -> str:
        return f"report of {self.objects} objects, {self.figures} figures, in {self.seconds:.1f} s -> {self.path}"


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
