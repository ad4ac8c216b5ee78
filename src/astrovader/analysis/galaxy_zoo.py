"""Components against Galaxy Zoo 2 votes (paper section 5.4, Figs. 13-14).

A vote catalogue (CSV, Parquet or FITS; the Hart et al. 2016 column names by default) is joined
on the object id. Per component: smooth and featured galaxies (debiased fraction > 0.43, the
paper's cut, Willett et al. 2013) and, among the featured ones, edge-on and not edge-on
(> 0.715), each with a floor on the number of votes behind the fraction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from astrovader.config import describe_validation_error
from astrovader.data.catalogue import id_text, read_table
from astrovader.errors import AstroVaDErError, InputError

ID_CANDIDATES = ("id_str", "dr7objid", "objid")
COUNT_COLUMNS = ("smooth", "featured", "edge_on", "not_edge_on")


class VoteSettings(BaseModel):
    """Column names, cuts and vote floors of the comparison; every one can be changed."""

    model_config = ConfigDict(extra="forbid")

    id_column: str | None = Field(None, description="id column of the vote table; None: the first of id_str, dr7objid, objid")
    smooth_column: str = "t01_smooth_or_features_a01_smooth_debiased"
    featured_column: str = "t01_smooth_or_features_a02_features_or_disk_debiased"
    edge_on_column: str = "t02_edgeon_a04_yes_debiased"
    not_edge_on_column: str = "t02_edgeon_a05_no_debiased"
    smooth_votes_column: str = "t01_smooth_or_features_total_votes"
    edge_on_votes_column: str = "t02_edgeon_total_votes"
    smooth_threshold: float = Field(0.43, ge=0, le=1)
    featured_threshold: float = Field(0.43, ge=0, le=1)
    edge_on_threshold: float = Field(0.715, ge=0, le=1)
    min_smooth_votes: int = Field(0, ge=0, description="floor on the smooth-or-featured votes")
    min_edge_on_votes: int = Field(10, ge=0, description="floor on the edge-on votes")

    @classmethod
    def from_pairs(cls, pairs: list[str] | None) -> VoteSettings:
        """From 'key=value' texts, e.g. ['edge_on_threshold=0.8', 'id_column=dr7objid']."""
        values: dict[str, str] = {}
        for pair in pairs or []:
            key, sign, value = pair.partition("=")
            if not sign or not key.strip():
                raise AstroVaDErError(f"--vote-option {pair!r}: expected KEY=VALUE (keys: {', '.join(cls.model_fields)})")
            values[key.strip()] = value.strip()
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise AstroVaDErError(describe_validation_error(error, "--vote-option")) from None


def read_votes(path: str | Path, settings: VoteSettings) -> pd.DataFrame:
    """The vote table indexed by id (as text), with the columns the comparison needs checked."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: vote catalogue not found")
    id_column = settings.id_column
    table = read_table(path, id_column=id_column or "id_str")
    if id_column is None:
        id_column = next((name for name in ID_CANDIDATES if name in table.columns), None)
        if id_column is None:
            raise InputError(f"{path}: no id column ({', '.join(ID_CANDIDATES)}); set --vote-option id_column=NAME")
    needed = [id_column, settings.smooth_column, settings.featured_column, settings.edge_on_column,
              settings.not_edge_on_column, settings.smooth_votes_column, settings.edge_on_votes_column]
    missing = [name for name in needed if name not in table.columns]
    if missing:
        raise InputError(f"{path}: no column {missing[0]!r} in the vote catalogue; set it with --vote-option")
    ids = table[id_column].map(id_text)
    if ids.duplicated().any():
        raise InputError(f"{path}: id {ids[ids.duplicated()].iloc[0]!r} appears more than once in {id_column!r}")
    return table[needed[1:]].set_axis(pd.Index(ids, name="id_str"))


def vote_classes(votes: pd.DataFrame, settings: VoteSettings) -> pd.DataFrame:
    """Boolean smooth / featured / edge_on / not_edge_on per object (missing values: False)."""
    numbers = votes.apply(pd.to_numeric, errors="coerce")
    enough_t01 = numbers[settings.smooth_votes_column] >= settings.min_smooth_votes
    enough_t02 = numbers[settings.edge_on_votes_column] >= settings.min_edge_on_votes
    featured = enough_t01 & (numbers[settings.featured_column] > settings.featured_threshold)
    return pd.DataFrame({
        "smooth": enough_t01 & (numbers[settings.smooth_column] > settings.smooth_threshold),
        "featured": featured,
        "edge_on": featured & enough_t02 & (numbers[settings.edge_on_column] > settings.edge_on_threshold),
        "not_edge_on": featured & enough_t02 & (numbers[settings.not_edge_on_column] > settings.edge_on_threshold),
    })


def vote_counts(ids: pd.Series, components: np.ndarray, votes: pd.DataFrame, settings: VoteSettings,
                order: list[int] | None = None) -> pd.DataFrame:
    """Per component (all, or `order`): objects, objects with votes, and the four vote classes."""
    frame = vote_classes(votes, settings).reindex(ids.to_numpy(), fill_value=False).astype(int)
    frame = frame.set_axis(range(len(ids)))
    frame["objects"] = 1
    frame["with_votes"] = ids.isin(votes.index).to_numpy().astype(int)
    table = frame.groupby(np.asarray(components)).sum()
    order = order if order is not None else sorted(set(np.asarray(components).tolist()))
    table = table.reindex(order, fill_value=0)[["objects", "with_votes", *COUNT_COLUMNS]]
    table.index.name = "component"
    return table
