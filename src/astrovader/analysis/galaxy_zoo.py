"""Components against Galaxy Zoo votes (paper section 5.4, Figs. 13-14).

A vote catalogue (CSV, Parquet or FITS) is joined on the object id. Per component: smooth and
featured galaxies (vote fraction > 0.43, the paper's cut, Willett et al. 2013) and, among the
featured ones, edge-on and not edge-on (> 0.715), each with a floor on the number of votes
behind the fraction.

Catalogues are read by their own column names (`--votes-schema`):
- `gz2`, Hart et al. (2016): `t01_smooth_or_features_a01_smooth_debiased` etc. (else the
  `_weighted_fraction` or `_fraction` columns); the votes behind a question are its
  `t01_smooth_or_features_total_votes` column or, as the tables are commonly distributed,
  the sum of its answers' `_count` columns.
- `decals`, GZ DECaLS (Walmsley et al. 2022) and the galaxy-datasets catalogues:
  `{question}_{answer}` counts with `_fraction` (or `_debiased`) and `{question}_total-votes`
  columns, questions `smooth-or-featured` and `disk-edge-on`, with any suffix the catalogue
  gives them (galaxy-datasets: `smooth-or-featured-gz2`, `-dr5`, ...).
- `auto` (default): whichever of the two the columns show.
Any column can still be named with `--vote-option smooth_column=...` and so on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from astrovader.config import describe_validation_error
from astrovader.data.catalogue import id_text, read_table
from astrovader.errors import AstroVaDErError, InputError

ID_CANDIDATES = ("id_str", "dr7objid", "objid", "iauname")
COUNT_COLUMNS = ("smooth", "featured", "edge_on", "not_edge_on")
FRACTIONS = ("smooth", "featured", "edge_on", "not_edge_on")  # the four answers the comparison reads
TOTALS = ("smooth_votes", "edge_on_votes")  # the votes behind the first and the second question

# Per schema: the question of each answer, its answers (in the catalogue's words), and the
# suffixes of a fraction column in order of preference.
GZ2 = {
    "questions": {"smooth": "t01_smooth_or_features", "edge_on": "t02_edgeon"},
    "answers": {"smooth": "a01_smooth", "featured": "a02_features_or_disk", "artifact": "a03_star_or_artifact",
                "edge_on": "a04_yes", "not_edge_on": "a05_no"},
    "fractions": ("_debiased", "_weighted_fraction", "_fraction"),
    "total": "_total_votes", "count": "_count",
}
DECALS = {
    "questions": {"smooth": "smooth-or-featured", "edge_on": "disk-edge-on"},
    "answers": {"smooth": "smooth", "featured": "featured-or-disk", "artifact": "artifact",
                "edge_on": "yes", "not_edge_on": "no"},
    "fractions": ("_debiased", "_fraction"),
    "total": "_total-votes", "count": "",
}
SCHEMAS = {"gz2": GZ2, "decals": DECALS}
QUESTION_OF = {"smooth": "smooth", "featured": "smooth", "artifact": "smooth", "edge_on": "edge_on",
               "not_edge_on": "edge_on"}


class VoteSettings(BaseModel):
    """Schema, column names, cuts and vote floors of the comparison; every one can be changed.
    Column names left empty come from the schema."""

    model_config = ConfigDict(extra="forbid")

    schema_: Literal["auto", "gz2", "decals"] = Field("auto", alias="schema", description="column names of the catalogue")
    id_column: str | None = Field(None, description=f"id column of the vote table; None: the first of {', '.join(ID_CANDIDATES)}")
    smooth_column: str | None = None
    featured_column: str | None = None
    edge_on_column: str | None = None
    not_edge_on_column: str | None = None
    smooth_votes_column: str | None = None
    edge_on_votes_column: str | None = None
    smooth_threshold: float = Field(0.43, ge=0, le=1)
    featured_threshold: float = Field(0.43, ge=0, le=1)
    edge_on_threshold: float = Field(0.715, ge=0, le=1)
    min_smooth_votes: int = Field(0, ge=0, description="floor on the smooth-or-featured votes")
    min_edge_on_votes: int = Field(10, ge=0, description="floor on the edge-on votes")

    @classmethod
    def from_pairs(cls, pairs: list[str] | None, schema: str = "auto") -> VoteSettings:
        """From 'key=value' texts, e.g. ['edge_on_threshold=0.8', 'id_column=dr7objid']."""
        values: dict[str, str] = {"schema": schema}
        keys = ", ".join(field.alias or name for name, field in cls.model_fields.items())
        for pair in pairs or []:
            key, sign, value = pair.partition("=")
            if not sign or not key.strip():
                raise AstroVaDErError(f"--vote-option {pair!r}: expected KEY=VALUE (keys: {keys})")
            values[key.strip()] = value.strip()
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            raise AstroVaDErError(describe_validation_error(error, "--vote-option")) from None

    def column(self, name: str) -> str | None:
        return getattr(self, f"{name}_column")


def read_votes(path: str | Path, settings: VoteSettings) -> pd.DataFrame:
    """The vote table indexed by id (as text), with one column per answer fraction (FRACTIONS)
    and per question total (TOTALS), whatever the catalogue calls them."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: vote catalogue not found")
    id_column = settings.id_column
    table = read_table(path, id_column=id_column or "id_str")
    if id_column is None:
        id_column = next((name for name in ID_CANDIDATES if name in table.columns), None)
        if id_column is None:
            raise InputError(f"{path}: no id column ({', '.join(ID_CANDIDATES)}); set --vote-option id_column=NAME")
    elif id_column not in table.columns:
        raise InputError(f"{path}: no id column {id_column!r} in the vote catalogue")
    ids = table[id_column].map(id_text)
    if ids.duplicated().any():
        raise InputError(f"{path}: id {ids[ids.duplicated()].iloc[0]!r} appears more than once in {id_column!r}")
    columns = {name: _fraction(table, path, settings, name) for name in FRACTIONS}
    columns |= {total: _total(table, path, settings, total.removesuffix("_votes")) for total in TOTALS}
    return pd.DataFrame(columns).set_axis(pd.Index(ids, name="id_str"))


def schema_of(table: pd.DataFrame, path: Path, settings: VoteSettings) -> tuple[dict, str]:
    """(schema, suffix of the catalogue's question names) of the vote table."""
    names = [settings.schema_] if settings.schema_ != "auto" else list(SCHEMAS)
    for name in names:
        schema = SCHEMAS[name]
        pattern = re.compile(re.escape(schema["questions"]["smooth"]) + r"([^_]*)_" + re.escape(schema["answers"]["smooth"]))
        for column in table.columns:
            match = pattern.match(str(column))
            if match:
                return schema, match.group(1)
    looked = " or ".join(f"{SCHEMAS[name]['questions']['smooth']}[suffix]_{SCHEMAS[name]['answers']['smooth']}..."
                         for name in names)
    raise InputError(f"{path}: not a Galaxy Zoo vote table of schema {settings.schema_!r}: no column like {looked} "
                     f"(use --votes-schema gz2|decals, or name the columns with --vote-option)")


def _question(schema: dict, suffix: str, answer: str) -> str:
    return schema["questions"][QUESTION_OF[answer]] + suffix


def _fraction(table: pd.DataFrame, path: Path, settings: VoteSettings, answer: str) -> pd.Series:
    named = settings.column(answer)
    if named is not None:
        return _numbers(table, path, [named], answer)
    schema, suffix = schema_of(table, path, settings)
    stem = f"{_question(schema, suffix, answer)}_{schema['answers'][answer]}"
    return _numbers(table, path, [stem + ending for ending in schema["fractions"]], answer)


def _total(table: pd.DataFrame, path: Path, settings: VoteSettings, answer: str) -> pd.Series:
    """The votes behind the question of `answer`: its total column, or the sum of its answers' counts."""
    named = settings.column(f"{answer}_votes")
    if named is not None:
        return _numbers(table, path, [named], f"{answer} votes")
    schema, suffix = schema_of(table, path, settings)
    question = _question(schema, suffix, answer)
    if question + schema["total"] in table.columns:
        return _numbers(table, path, [question + schema["total"]], f"{answer} votes")
    answers = [name for name, asked in QUESTION_OF.items() if asked == QUESTION_OF[answer]]
    counts = [f"{question}_{schema['answers'][name]}{schema['count']}" for name in answers]
    missing = [name for name in counts if name not in table.columns]
    if missing:
        raise InputError(f"{path}: no column {question + schema['total']!r} and no answer counts {', '.join(map(repr, counts))} "
                         f"to add up (missing {missing[0]!r}); set --vote-option {answer}_votes_column=NAME")
    return sum(pd.to_numeric(table[name], errors="coerce").fillna(0) for name in counts)


def _numbers(table: pd.DataFrame, path: Path, candidates: list[str], what: str) -> pd.Series:
    for name in candidates:
        if name in table.columns:
            return pd.to_numeric(table[name], errors="coerce")
    raise InputError(f"{path}: no column {' or '.join(map(repr, candidates))} ({what}) in the vote catalogue; "
                     f"set it with --vote-option")


def vote_classes(votes: pd.DataFrame, settings: VoteSettings) -> pd.DataFrame:
    """Boolean smooth / featured / edge_on / not_edge_on per object (missing values: False)."""
    enough_t01 = votes["smooth_votes"] >= settings.min_smooth_votes
    enough_t02 = votes["edge_on_votes"] >= settings.min_edge_on_votes
    featured = enough_t01 & (votes["featured"] > settings.featured_threshold)
    return pd.DataFrame({
        "smooth": enough_t01 & (votes["smooth"] > settings.smooth_threshold),
        "featured": featured,
        "edge_on": featured & enough_t02 & (votes["edge_on"] > settings.edge_on_threshold),
        "not_edge_on": featured & enough_t02 & (votes["not_edge_on"] > settings.edge_on_threshold),
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
