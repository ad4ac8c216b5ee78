"""What a report is asked for (`ReportOptions`) and what its sections share while it is built
(`Context`): the run, the analysed objects, their images, the page."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from astrovader.analysis.galaxy_zoo import VoteSettings
from astrovader.analysis.objects import ImageSource, Objects
from astrovader.report.page import Page
from astrovader.runs import Run


@dataclass
class ReportOptions:
    predictions: Path | None = None  # an `astrovader predict` table; None: encode the cache split
    data: Path | None = None  # a prepared cache; None: the run's own
    split: str = "test"
    votes: Path | None = None  # Galaxy Zoo 2 vote catalogue
    vote_settings: VoteSettings = field(default_factory=VoteSettings)
    labels: str | None = None  # column of known classes; None: data.catalogue.label_column's choice
    subset: str | None = None  # components for Fig. 8 and the Galaxy Zoo comparison, e.g. "0,3,5"
    seed: int = 0
    examples: int = 8  # galaxies per gallery row and in Fig. 3
    map_points: int = 1000  # objects in the 2-D latent map (t-SNE time grows fast with it)
    choose_k_fits: int = 10  # 0 skips choosing K
    choose_k_batch: int = 2000
    max_components: int = 30
    threshold: float = 0.01


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
