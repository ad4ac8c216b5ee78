"""The 2-D latent map: t-SNE (`analysis.clusters.latent_map`) or PCA of mu_z
for a seeded subsample of at most MAP_POINTS objects. Computed once in a background thread
(t-SNE of 5,000 points takes over a minute on one core; the rest of the explorer works
meanwhile) and kept in RUN/explore/latent_map.json, one file written atomically, with a key
(method, seed, rows, digest of the sampled mu) that tells whether it still belongs to the
catalogue."""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from astrovader.analysis.clusters import latent_map
from astrovader.atomic import read_json, write_json_atomic
from astrovader.errors import AstroVaDErError
from astrovader.explore.catalogue import Catalogue

MAP_POINTS = 5000
COLUMNS = ("position", "x", "y")  # of the kept map
METHODS = ("tsne", "pca")
log = logging.getLogger("uvicorn.error")  # uvicorn's console handler: one line per event


class LatentMap:
    def __init__(self, catalogue: Catalogue, folder: Path, method: str = "tsne", seed: int = 0, max_points: int = MAP_POINTS):
        if method not in METHODS:
            raise AstroVaDErError(f"--map {method!r}: choose tsne or pca")
        self.catalogue, self.method, self.seed = catalogue, method, seed
        self.path = folder / "latent_map.json"
        readable = np.flatnonzero(catalogue.readable)
        self.positions = readable[sample_positions(len(readable), seed, max_points)]
        self.key = {"method": method, "seed": seed, "rows": len(catalogue.ids), "digest": self._digest()}
        self.table: pd.DataFrame | None = None
        self.label = ""
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    def _digest(self) -> str:
        digest = hashlib.sha256(self.catalogue.mu[self.positions].tobytes())
        digest.update("\0".join(self.catalogue.ids[self.positions]).encode())
        return digest.hexdigest()[:32]

    def start(self) -> None:
        """Load the kept map when its key matches, else compute it in the background."""
        kept = self._kept()
        if {name: kept.get(name) for name in self.key} == self.key:
            self.table, self.label = pd.DataFrame({name: kept[name] for name in COLUMNS}), kept["label"]
            return
        self._thread = threading.Thread(target=self._compute, name="latent-map", daemon=True)
        self._thread.start()

    def _kept(self) -> dict:
        try:
            return read_json(self.path) if self.path.exists() else {}
        except ValueError:  # not JSON (edited by hand?): made again
            return {}

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _compute(self) -> None:
        log.info("latent map: %s of %d objects, once (kept in %s)", self.method, len(self.positions), self.path)
        try:
            coordinates, label = project(self.catalogue.mu[self.positions], self.method, self.seed)
            table = pd.DataFrame({"position": self.positions, "x": coordinates[:, 0], "y": coordinates[:, 1]})
            write_json_atomic(self.path, {**self.key, "label": label, **{name: table[name].tolist() for name in COLUMNS}})
        except Exception as error:  # noqa: BLE001 - in a thread, anything uncaught prints a traceback
            detail = str(error) if isinstance(error, AstroVaDErError) else f"{type(error).__name__}: {error}"
            self.error = f"latent map: {detail}"
            log.warning(self.error)
            return
        self.table, self.label = table, label
        log.info("latent map ready (%s)", label)

    def state(self) -> dict:
        if self.table is not None:
            return {"status": "ready", "method": self.label, "points": len(self.table)}
        if self.error is not None:
            return {"status": "failed", "message": self.error}
        return {"status": "computing", "message": f"computing the latent map ({self.method} of {len(self.positions)} objects)"}


def sample_positions(count: int, seed: int, max_points: int) -> np.ndarray:
    """A seeded subsample of at most `max_points` of `count` positions, in increasing order:
    drawn here rather than in `latent_map` so that the kept map's key can be checked before
    anything is projected."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(count, min(max_points, count), replace=False))


def project(mu: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str]:
    """2-D coordinates of every row of mu, and the method's name."""
    if len(mu) < 5:
        raise AstroVaDErError(f"{len(mu)} objects are too few for a 2-D map (need 5)")
    if method == "tsne":
        _, coordinates, label = latent_map(mu, seed, max_points=len(mu))  # every row: the subsample is ours
        return coordinates, label
    centred = np.asarray(mu, np.float64) - mu.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    coordinates = centred @ axes[:2].T
    return np.pad(coordinates, ((0, 0), (0, 2 - coordinates.shape[1]))), "PCA"  # one latent: a line
