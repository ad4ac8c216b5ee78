"""The Python API, with scikit-learn habits: fit, predict, predict_proba, transform, sample.

    model = AstroVaDEr(preset="cpu").fit("catalog.csv", out="runs/gz1")
    model.predict_proba(images)      # gamma (eq. 17 scaled), per galaxy, batch-independent
    model.sample(16, component=3)    # synthetic galaxies from one mixture component
    model.interpolate(a, b), model.traverse(images)   # latent-space walks (Figs. 10-12: generate/)
    model.weights_, model.means_, model.covariances_

Inputs `x` are model-ready pixels, an array (N, H, W) or (N, C, H, W), uint8 or floats in
[0, 1] at the model's size; or a path (prepared cache, catalogue, image folder), preprocessed
with the model's own settings.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from astrovader.config import Config
from astrovader.errors import AstroVaDErError, InputError


class AstroVaDEr:
    def __init__(self, config: Config | None = None, preset: str = "cpu", **overrides: Any):
        self.config = config if config is not None else Config.from_preset(preset)
        if overrides:
            self.config = self.config.with_overrides(overrides)
        self.model_ = None
        self.run_dir_: Path | None = None
        self.metadata_: dict[str, Any] = {}

    # -- training / loading -------------------------------------------------------------------
    def fit(self, data=None, out: str | Path | None = None, resume: bool = False, progress: bool = False) -> AstroVaDEr:
        """Train on `data` (see train_run) in run folder `out` (a new temporary folder if None)."""
        from astrovader.train.run import train_run

        out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="astrovader-run-"))
        train_run(out, self.config, data, resume=resume, progress=progress)
        return self._load(out)

    @classmethod
    def load(cls, run_dir: str | Path) -> AstroVaDEr:
        """A trained model from its run folder (safetensors + JSON; nothing is unpickled)."""
        from astrovader.model.io import load_model

        model, metadata = load_model(run_dir)
        estimator = cls(config=model.config)
        estimator.model_, estimator.metadata_, estimator.run_dir_ = model, metadata, Path(run_dir)
        return estimator

    def _load(self, run_dir: Path) -> AstroVaDEr:
        loaded = AstroVaDEr.load(run_dir)
        self.model_, self.metadata_, self.run_dir_ = loaded.model_, loaded.metadata_, loaded.run_dir_
        self.config = loaded.config
        return self

    def _model(self):
        if self.model_ is None:
            raise AstroVaDErError("this AstroVaDEr is not fitted yet: call fit() or AstroVaDEr.load(run_dir)")
        return self.model_

    # -- inference ----------------------------------------------------------------------------
    def outputs(self, x, reconstruct: bool = False) -> dict[str, np.ndarray]:
        from astrovader.model.inference import model_outputs

        return model_outputs(self._model(), self.pixels(x), reconstruct=reconstruct)

    def transform(self, x) -> np.ndarray:
        """mu_z, the latent embedding (N, J)."""
        return self.outputs(x)["mu"]

    def predict_proba(self, x) -> np.ndarray:
        """gamma (N, K): eq. 17-scaled and softmaxed component probabilities, from mu_z."""
        return self.outputs(x)["gamma"]

    def predict(self, x) -> np.ndarray:
        """The most probable component of each image (N,)."""
        return self.predict_proba(x).argmax(axis=1)

    def score_samples(self, x) -> np.ndarray:
        """log p(mu_z) under the mixture, per image (N,)."""
        return self.outputs(x)["log_likelihood"]

    def reconstruct(self, x) -> np.ndarray:
        """Images (N, C, H, W) in [0, 1]: each image's mu_z decoded, in the fixed blocks of
        `model.inference` (so batch-independent) and clipped to the data's range."""
        from astrovader.model.inference import decode

        return decode(self._model(), self.transform(x))

    def sample(self, n: int, component: int | list[int] | None = None, seed: int = 0,
               variance_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(images (n, C, H, W), components (n,)): c ~ Cat(pi) (restricted to the given component
        or components), z ~ N(mu_c, variance_scale * sigma_c^2); see generate.latents.sample_images."""
        from astrovader.generate.latents import sample_images

        images, components, _ = sample_images(self._model(), n, component, seed, variance_scale)
        return images, components

    def interpolate(self, a, b, steps: int = 8) -> np.ndarray:
        """Images (steps, C, H, W) decoded along the line between the embeddings of images a
        and b, each (H, W) or (C, H, W); the first and last are their reconstructions."""
        from astrovader.generate.latents import interpolate

        z_a, z_b = (self.transform(np.asarray(image)[None])[0] for image in (a, b))
        return interpolate(self._model(), z_a, z_b, steps)[1]

    def traverse(self, x, steps: int = 9) -> np.ndarray:
        """Images (J, steps, C, H, W): latent j from its minimum to its maximum over x's
        embeddings, the others at their mean (paper Fig. 11); see generate.latents.traversal."""
        from astrovader.generate.latents import traversal

        return traversal(self._model(), self.transform(x), steps).images

    # -- learned mixture, as scikit-learn names it ----------------------------------------------
    @property
    def weights_(self) -> np.ndarray:
        return self._model().prior.log_weights().exp().detach().numpy()

    @property
    def means_(self) -> np.ndarray:
        return self._model().prior.means.detach().numpy().copy()

    @property
    def covariances_(self) -> np.ndarray:
        """Covariances as GaussianMixture names them: (K, J) for covariance_type 'diag',
        (K, J, J) for 'full' (`model.covariance`)."""
        return self._model().prior.covariances().detach().numpy()

    # -- inputs ---------------------------------------------------------------------------------
    def pixels(self, x) -> np.ndarray:
        """Model-ready pixels (N, C, H, W) from an array or a path."""
        if isinstance(x, (str, Path)):
            return self._pixels_from_path(Path(x))
        from astrovader.data.loader import check_pixels

        return check_pixels(x, self.config.data)

    def _pixels_from_path(self, path: Path) -> np.ndarray:
        from astrovader.data.cache import Cache, decode_files
        from astrovader.data.catalogue import read_catalogue
        from astrovader.data.loader import read_rows

        if Cache.is_cache(path):
            cache = Cache(path)
            return read_rows(cache.images, cache.index["row"].to_numpy())
        catalogue = read_catalogue(path, self.config.data)
        pixels, reasons = decode_files(catalogue["file_loc"].tolist(), self.config.data)
        bad = [f"{identifier}: {reason}" for identifier, reason in zip(catalogue["id_str"], reasons) if reason]
        if bad:
            raise InputError(f"{path}: {len(bad)} input(s) could not be read, e.g. {bad[0]}")
        return pixels
