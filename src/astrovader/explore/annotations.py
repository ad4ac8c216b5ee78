"""Annotations of a run: component names and notes, and flags and notes on single objects, in
one CSV file in the run folder (RUN/explore/annotations.csv).

One row per annotated thing, the latest state (not a log):

    id_str   component   name        flag        note              time
             3           spirals                 two-armed, face-on 2026-01-02T10:00:00+00:00
    g0042    3                       merger      tidal tail         2026-01-02T10:01:00+00:00

A component's row has an empty id_str; an object's row holds its component when it was
flagged. Every change is written to a temporary file and renamed over the old one before it
is acknowledged, so a kill at any moment leaves either the old or the new file, never a
half-written one, and never loses an acknowledged change."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from astrovader.atomic import write_with
from astrovader.errors import InputError

COLUMNS = ["id_str", "component", "name", "flag", "note", "time"]
SUGGESTED_FLAGS = ("artefact", "merger", "wrong component")


class Annotations:
    def __init__(self, path: Path, n_components: int):
        self.path = Path(path)
        self.n_components = n_components
        self.lock = threading.Lock()  # requests run in a thread pool
        self.components: dict[int, dict] = {}  # component -> name, note, time
        self.objects: dict[str, dict] = {}  # id_str -> component, flag, note, time
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            table = pd.read_csv(self.path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
            raise InputError(f"{self.path}: not a readable annotations file ({error}); move it away to start afresh") from None
        missing = [name for name in COLUMNS if name not in table]
        if missing:
            raise InputError(f"{self.path}: no {', '.join(missing)} column(s); expected {', '.join(COLUMNS)}")
        for line, row in enumerate(table.to_dict(orient="records"), start=2):
            component = self._component(row["component"], line)
            if row["id_str"]:
                self.objects[row["id_str"]] = {"component": component, "flag": row["flag"], "note": row["note"], "time": row["time"]}
            else:
                self.components[component] = {"name": row["name"], "note": row["note"], "time": row["time"]}

    def _component(self, text: str, line: int) -> int:
        if not text.lstrip("-").isdigit() or not -1 <= int(text) < self.n_components:
            raise InputError(f"{self.path} line {line}: component {text!r}, but the model has components 0..{self.n_components - 1}")
        return int(text)

    # -- changes --------------------------------------------------------------------------------
    def name_component(self, component: int, name: str, note: str) -> dict:
        """Set (or, with both empty, clear) a component's name and note; on disk when it returns."""
        entry = {"name": name.strip(), "note": note.strip(), "time": now()}
        with self.lock:
            components = {**self.components, component: entry}
            if not entry["name"] and not entry["note"]:
                del components[component]
            self._write(components, self.objects)
            self.components = components
        return self.component_entry(component)

    def annotate_object(self, id_str: str, component: int, flag: str, note: str) -> dict:
        """Set (or, with both empty, clear) an object's flag and note; on disk when it returns."""
        entry = {"component": component, "flag": flag.strip(), "note": note.strip(), "time": now()}
        with self.lock:
            objects = {**self.objects, id_str: entry}
            if not entry["flag"] and not entry["note"]:
                del objects[id_str]
            self._write(self.components, objects)
            self.objects = objects
        return self.object_entry(id_str)

    def _write(self, components: dict[int, dict], objects: dict[str, dict]) -> None:
        table = annotation_table(components, objects)
        write_with(self.path, lambda temporary: table.to_csv(temporary, index=False))

    # -- reading --------------------------------------------------------------------------------
    def component_entry(self, component: int) -> dict:
        return self.components.get(component, {"name": "", "note": "", "time": ""})

    def object_entry(self, id_str: str) -> dict:
        return self.objects.get(id_str, {"flag": "", "note": "", "time": ""})

    def names(self) -> dict[int, str]:
        return {component: entry["name"] for component, entry in self.components.items() if entry["name"]}

    def flags(self) -> dict[str, str]:
        return {id_str: entry["flag"] for id_str, entry in self.objects.items() if entry["flag"]}

    def notes(self) -> dict[str, str]:
        return {id_str: entry["note"] for id_str, entry in self.objects.items() if entry["note"]}

    def flag_names(self) -> list[str]:
        """The suggested flags, then any other flag in use."""
        used = sorted(set(self.flags().values()) - set(SUGGESTED_FLAGS))
        return [*SUGGESTED_FLAGS, *used]


def annotation_table(components: dict[int, dict], objects: dict[str, dict]) -> pd.DataFrame:
    rows = [{"id_str": "", "component": c, "name": e["name"], "flag": "", "note": e["note"], "time": e["time"]}
            for c, e in sorted(components.items())]
    rows += [{"id_str": i, "component": e["component"], "name": "", "flag": e["flag"], "note": e["note"], "time": e["time"]}
             for i, e in objects.items()]
    return pd.DataFrame(rows, columns=COLUMNS)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
