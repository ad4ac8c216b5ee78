"""The main job: data (simulated galaxies by default) -> train -> predict -> report.

Every step writes into one run folder and is resumable, so re-running the same command after an
interruption continues where it stopped: training resumes from its checkpoint, prediction from
its finished parts, and the report is rebuilt.

    RUN/                 the training run (config.yaml, metrics.csv, model.safetensors, ...)
    RUN/predictions/     the cluster catalogue of every prepared input (Parquet parts)
    RUN/report/          report.html, the PNG figures, summary.json
    RUN/pipeline.json    wall time of each step and the headline figures
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from astrovader.analysis.galaxy_zoo import VoteSettings
from astrovader.atomic import write_json_atomic
from astrovader.config import Config
from astrovader.errors import InputError
from astrovader.runs import RunFolder

ProgressFactory = Callable[[str], AbstractContextManager]


@dataclass
class PipelineSummary:
    run_dir: Path
    seconds: dict[str, float] = field(default_factory=dict)
    headline: dict = field(default_factory=dict)

    @property
    def report(self) -> Path:
        return self.run_dir / "report" / "report.html"

    def line(self) -> str:
        steps = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in self.seconds.items())
        return f"done in {sum(self.seconds.values()):.0f} s ({steps}); open {self.report}"


def run_pipeline(out: str | Path, config: Config | None = None, data=None, votes: Path | None = None,
                 labels: str | None = None, progress: ProgressFactory | None = None,
                 vote_settings: VoteSettings | None = None) -> PipelineSummary:
    """Train (or resume) in `out`, then predict every prepared input and write the report."""
    from astrovader.report import ReportOptions, build_report
    from astrovader.predict import predict_catalogue
    from astrovader.train.run import train_run

    out = Path(out)
    run = RunFolder(out)
    bar = progress or (lambda name: nullcontext())
    summary = PipelineSummary(out)

    started = time.perf_counter()
    if not run.has_model():
        resume = run.last_checkpoint.exists()
        train_run(out, None if resume else config, None if resume else data, resume=resume, progress=progress is not None)
    summary.seconds["data + train"] = time.perf_counter() - started

    started = time.perf_counter()
    cache = run.recorded_cache()
    if cache is None:  # trained on an in-memory array
        raise InputError(f"{out}: records no prepared cache of its data to predict")
    with bar("predict") as update:
        predict_catalogue(out, cache, out / "predictions", progress=update, output_format="parquet")
    summary.seconds["predict"] = time.perf_counter() - started

    started = time.perf_counter()
    options = ReportOptions(predictions=out / "predictions", votes=votes, labels=labels,
                            vote_settings=vote_settings or VoteSettings())
    with bar("report") as update:
        report = build_report(out, out / "report", options, progress=update)
    summary.seconds["report"] = time.perf_counter() - started
    summary.headline = report.headline
    write_json_atomic(out / "pipeline.json", {"seconds": summary.seconds, "headline": summary.headline})
    return summary
