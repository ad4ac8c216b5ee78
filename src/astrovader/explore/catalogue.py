"""The run and its cluster catalogue as the explorer sees them: checked against each other once
at start, then held in memory (one pandas DataFrame) and served in pages and aggregates only.

Everything per request is bounded: a page of members, one object, one image. Orders and
filters over the whole table are computed once per distinct query and kept (LRU), so paging
through a component of 10^5 members costs one sort."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from astrovader.analysis.metrics import simplified_silhouette
from astrovader.analysis.objects import numbered_columns
from astrovader.data.cache import Cache
from astrovader.data.loader import read_rows
from astrovader.errors import AstroVaDErError, InputError
from astrovader.model.inference import model_outputs
from astrovader.predict import read_predictions
from astrovader.runs import RunFolder

PAGE_LIMIT = 200  # members per page at most: the browser never holds more than a page
TOP_MEMBERS = 8  # most probable members shown per component
SORT_COLUMNS = {"gamma": "gamma_max", "mse": "mse", "log_likelihood": "log_likelihood"}
BLOCKS = ("gamma", "posterior", "mu", "logvar")  # per-component / per-latent columns, never filters
CATEGORY_LIMIT = 50  # distinct values up to which a column is offered as categories
SILHOUETTE_MEMBERS = 5000  # per component: N x K x J distances of 10^6 objects would take 2 GB
CHECKED_OBJECTS = 64  # encoded again at start to tell whether the catalogue is this model's


class UnknownItem(AstroVaDErError):
    """A request for an id, component or column that does not exist (HTTP 404)."""


@dataclass(frozen=True)
class MemberQuery:
    component: int
    sort: str = "gamma"
    descending: bool = True
    column: str | None = None  # filter: rows whose `column` equals `value` (as text) ...
    value: str | None = None
    low: float | None = None  # ... and / or lies in [low, high]
    high: float | None = None


class Catalogue:
    def __init__(self, run_dir: str | Path, predictions: str | Path | None = None, data: str | Path | None = None):
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise InputError(f"{run_dir}: no such run folder")
        self.run = RunFolder(run_dir).open()
        self.model = self.run.model
        self.path = Path(predictions) if predictions is not None else default_predictions(run_dir)
        self.frame = read_predictions(self.path)
        self.n_components = self.model.prior.n_components
        self._check_columns()
        self.ids = self.frame["id_str"].astype(str).to_numpy()
        self.component = self.frame["component"].to_numpy(np.int64)
        self.cache = self._image_cache(data)
        self.cache_rows = self._cache_rows()
        self._check_model()
        self.member_order = lru_cache(maxsize=64)(self._member_order)
        self.filter_mask = lru_cache(maxsize=32)(self._filter_mask)

    # -- checks at start ------------------------------------------------------------------------
    def _check_columns(self) -> None:
        missing = [name for name in ("id_str", "component", "gamma_max", "mse", "log_likelihood") if name not in self.frame]
        if missing:
            raise InputError(f"{self.path}: no {', '.join(missing)} column(s); expected an `astrovader predict` catalogue")
        self.gamma_columns, self.mu_columns = numbered_columns(self.frame, "gamma"), numbered_columns(self.frame, "mu")
        latent = self.model.prior.means.shape[1]
        if (len(self.gamma_columns), len(self.mu_columns)) != (self.n_components, latent):
            raise InputError(
                f"{self.path}: {len(self.gamma_columns)} gamma and {len(self.mu_columns)} mu columns, but the model of "
                f"{self.run.folder} has K = {self.n_components} components and J = {latent} latents; this catalogue "
                f"was predicted with another model (run `astrovader predict {self.run.folder} DATA` again)"
            )
        components = self.frame["component"].to_numpy(np.int64)
        if components.max(initial=-1) >= self.n_components:
            raise InputError(f"{self.path}: component {components.max()} but the model has components 0..{self.n_components - 1}")

    def _image_cache(self, data: str | Path | None) -> Cache:
        cache = self.run.cache(data)
        if cache is None:
            raise InputError(f"{self.run.folder}: run.json records no prepared cache to show images from; give one with --data CACHE")
        return cache

    def _cache_rows(self) -> np.ndarray:
        """Cache row of every catalogue row (-1 for rows the model could not read)."""
        index = self.cache.index
        lookup = pd.Series(index["row"].to_numpy(np.int64), index=index["id_str"].astype(str))
        lookup = lookup[~lookup.index.duplicated()]
        rows = lookup.reindex(self.ids).to_numpy()
        missing = np.isnan(rows) & self.readable
        if missing.any():
            example = self.ids[np.flatnonzero(missing)[0]]
            raise InputError(
                f"{self.path}: {int(missing.sum())} of {int(self.readable.sum())} ids are not in the cache "
                f"{self.cache.folder} (e.g. {example!r}); give the cache this catalogue was predicted from with --data"
            )
        return np.where(np.isnan(rows), -1, rows).astype(np.int64)

    def _check_model(self) -> None:
        """Another run's catalogue can have the same K and J: encode a few of its objects again
        and compare mu_z (loosely: the catalogue may have been predicted in bf16)."""
        positions = np.flatnonzero(self.readable)[:CHECKED_OBJECTS]
        if not len(positions):
            return
        encoded = model_outputs(self.model, read_rows(self.cache.images, self.cache_rows[positions]), reconstruct=False)["mu"]
        stored = self.mu[positions]
        if np.median(np.abs(encoded - stored)) > 0.1 * max(float(stored.std()), 1e-6):
            raise InputError(
                f"{self.path}: its mu_z are not what the model of {self.run.folder} gives for the same images; this "
                f"catalogue was predicted with another model (run `astrovader predict {self.run.folder} DATA` again)"
            )

    # -- the catalogue in aggregate -------------------------------------------------------------
    @cached_property
    def readable(self) -> np.ndarray:
        return self.component >= 0

    @cached_property
    def positions_by_component(self) -> list[np.ndarray]:
        order = np.argsort(self.component, kind="stable")
        bounds = np.searchsorted(self.component[order], np.arange(-1, self.n_components + 1))
        return [order[bounds[c + 1] : bounds[c + 2]] for c in range(self.n_components)]

    @cached_property
    def weights(self) -> np.ndarray:
        return self.model.prior.log_weights().exp().detach().float().numpy()

    @cached_property
    def mu(self) -> np.ndarray:
        return self.frame[self.mu_columns].to_numpy(np.float32, copy=True)  # writable: torch takes it as it is

    @cached_property
    def silhouettes(self) -> np.ndarray:
        """Mean simplified silhouette (eq. 18 per sample) of each component's members: of all of
        them up to SILHOUETTE_MEMBERS, else of that many drawn at random (seeded)."""
        rng = np.random.default_rng(0)
        chosen = np.concatenate([members if len(members) <= SILHOUETTE_MEMBERS
                                 else np.sort(rng.choice(members, SILHOUETTE_MEMBERS, replace=False))
                                 for members in self.positions_by_component])
        scores = simplified_silhouette(self.mu[chosen], self.component[chosen])
        return pd.Series(scores).groupby(self.component[chosen]).mean().reindex(range(self.n_components)).to_numpy()

    def components_table(self) -> list[dict]:
        sizes = np.bincount(self.component[self.readable], minlength=self.n_components)
        return [
            {"component": c, "size": int(sizes[c]), "weight": float(self.weights[c]),
             "silhouette": json_value(self.silhouettes[c]),
             "top": self.ids[self.member_order(MemberQuery(c))[:TOP_MEMBERS]].tolist()}
            for c in range(self.n_components)
        ]

    @cached_property
    def columns(self) -> list[dict]:
        """The catalogue's scalar columns, offered as filters and map colours."""
        block = {name for prefix in BLOCKS for name in numbered_columns(self.frame, prefix)}
        skipped = block | {"id_str", "component"}  # the component is the map's default colour and each member list's own
        return [describe_column(self.frame[name]) for name in self.frame.columns if name not in skipped]

    @cached_property
    def column_kinds(self) -> dict[str, str]:
        return {column["name"]: column["kind"] for column in self.columns}

    # -- members --------------------------------------------------------------------------------
    def check_component(self, component: int) -> None:
        if not 0 <= component < self.n_components:
            raise UnknownItem(f"component {component}: the model has components 0..{self.n_components - 1}")

    def _member_order(self, query: MemberQuery) -> np.ndarray:
        """Positions of the component's members passing the filter, in the requested order
        (missing values last, ties in catalogue order)."""
        self.check_component(query.component)
        if query.sort not in SORT_COLUMNS:
            raise InputError(f"sort {query.sort!r}: choose one of {', '.join(SORT_COLUMNS)}")
        positions = self.positions_by_component[query.component]
        if query.column is not None:
            positions = positions[self.filter_mask(query.column, query.value, query.low, query.high)[positions]]
        values = self.frame[SORT_COLUMNS[query.sort]].to_numpy(np.float64)[positions]
        return positions[np.argsort(-values if query.descending else values, kind="stable")]

    def _filter_mask(self, column: str, value: str | None, low: float | None, high: float | None) -> np.ndarray:
        if column not in self.column_kinds:
            raise UnknownItem(f"column {column!r}: not in the catalogue (columns: {', '.join(self.column_kinds)})")
        series = self.frame[column]
        mask = np.ones(len(series), bool)
        if value is not None:
            mask &= series.astype(str).to_numpy() == value
        if low is not None or high is not None:
            if self.column_kinds[column] != "number":
                raise InputError(f"column {column!r} is not numeric: filter it by value, not by range")
            numbers = series.to_numpy(np.float64, na_value=np.nan)
            mask &= (numbers >= (-np.inf if low is None else low)) & (numbers <= (np.inf if high is None else high))
        return mask

    def id_in(self, positions: np.ndarray, ids: list[str]) -> np.ndarray:
        return np.isin(self.ids[positions], np.asarray(ids, dtype=object))

    def map_colours(self, positions: np.ndarray, column: str, categories: int) -> dict:
        """A column's values at the map's points: numbers (None when missing), or codes into the
        `categories` most frequent values with any others as "other"."""
        if column not in self.column_kinds:
            raise UnknownItem(f"column {column!r}: not in the catalogue (columns: {', '.join(self.column_kinds)})")
        series = self.frame[column].iloc[positions]
        if self.column_kinds[column] == "number":
            return {"kind": "number", "values": [json_value(value) for value in series.to_numpy(np.float64, na_value=np.nan)]}
        text = series.astype(str)
        shown = text.value_counts().index[:categories].tolist()
        codes = pd.Categorical(text, categories=shown).codes  # -1: not among the shown
        names = shown + (["other"] if (codes < 0).any() else [])
        return {"kind": "category", "categories": names, "codes": np.where(codes < 0, len(shown), codes).tolist()}

    def page(self, order: np.ndarray, page: int, per_page: int) -> dict:
        if not 1 <= per_page <= PAGE_LIMIT:
            raise InputError(f"per_page {per_page}: between 1 and {PAGE_LIMIT}")
        pages = max(1, -(-len(order) // per_page))
        if not 0 <= page < pages:
            raise InputError(f"page {page}: there {'is' if pages == 1 else 'are'} {pages} page(s) (0..{pages - 1})")
        chosen = order[page * per_page : (page + 1) * per_page]
        rows = [{"id_str": self.ids[p], "gamma": json_value(self.frame["gamma_max"].iat[p]),
                 "mse": json_value(self.frame["mse"].iat[p]),
                 "log_likelihood": json_value(self.frame["log_likelihood"].iat[p])} for p in chosen]
        return {"total": int(len(order)), "page": page, "pages": pages, "per_page": per_page, "rows": rows}

    # -- one object -----------------------------------------------------------------------------
    @cached_property
    def _position_lookup(self) -> pd.Series:
        lookup = pd.Series(np.arange(len(self.ids)), index=self.ids)
        return lookup[~lookup.index.duplicated()]

    def position(self, id_str: str) -> int:
        position = self._position_lookup.get(id_str)
        if position is None:
            raise UnknownItem(f"id {id_str!r}: not in the catalogue {self.path.name}")
        return int(position)

    def object(self, id_str: str) -> dict:
        position = self.position(id_str)
        row = self.frame.iloc[position]
        return {
            "id_str": id_str, "component": int(row["component"]),
            "gamma": [json_value(row[name]) for name in self.gamma_columns],
            "columns": {name: json_value(row[name]) for name in ["component", *self.column_kinds]},
        }


def default_predictions(run_dir: Path) -> Path:
    path = run_dir / "predictions"
    if not path.exists():
        raise InputError(
            f"{path}: no cluster catalogue; run `astrovader predict {run_dir} DATA --out {path}` first, "
            f"or give the catalogue as PREDICTIONS"
        )
    return path


def describe_column(series: pd.Series) -> dict:
    """name, kind ('category' for text, flags and integers with few values, 'number' for other
    numbers, 'text' for text with many values) and, for categories, the values by frequency."""
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    integral = pd.api.types.is_integer_dtype(series)
    distinct = series.nunique(dropna=False) if not numeric or integral else None
    if numeric and (distinct is None or distinct > CATEGORY_LIMIT):
        return {"name": str(series.name), "kind": "number"}
    if distinct > CATEGORY_LIMIT:
        return {"name": str(series.name), "kind": "text"}
    values = series.astype(str).value_counts().index.tolist()
    return {"name": str(series.name), "kind": "category", "values": values}


def json_value(value):
    """A value JSON can carry: numpy scalars as Python numbers, NaN / NA as None."""
    if value is None or (not isinstance(value, (str, bytes)) and pd.isna(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
