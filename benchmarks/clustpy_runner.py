"""ClustPy's VaDE (`clustpy.deep.VaDE`, an independent implementation of VaDE with the same
784-500-500-2000-J MLP) on the benchmark's arrays, in a virtual environment of its own.

ClustPy imports torchvision, and PyPI's torchvision does not load beside the project's
torch 2.13.0, so `ensure_venv` makes benchmarks/.clustpy-venv once (torch 2.14.1, torchvision
0.29.1, clustpy; ~6 GB) and `cluster` runs this file there as a subprocess: the arrays go
over as .npy files, the labels come back as JSON. The worker half (`main`) imports only numpy,
torch and clustpy, never astrovader.

    python benchmarks/clustpy_runner.py FOLDER    (inside the venv: FOLDER/request.json,
                                                   train.npy, test.npy -> FOLDER/result.json)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VENV = Path(__file__).resolve().parent / ".clustpy-venv"
PACKAGES = ("torch==2.14.1", "torchvision==0.29.1", "clustpy")
READY = VENV / ".ready"  # written once the packages installed and clustpy.deep imported
METHODS = ("clustpy-vade-default", "clustpy-vade-matched")
DEFAULT_EPOCHS = (100, 150)  # clustpy.deep.VaDE's documented pretrain_epochs, clustering_epochs


class ClustPyError(RuntimeError):
    """The ClustPy environment cannot be made, or its run failed."""


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv(echo=print) -> Path:
    """The venv's python, making the venv first if needed (a few minutes, once)."""
    if READY.exists():
        return venv_python()
    echo(f"making {VENV} for ClustPy ({' '.join(PACKAGES)}); once, a few minutes")
    steps = (
        [sys.executable, "-m", "venv", str(VENV)],
        [str(venv_python()), "-m", "pip", "install", "-q", *PACKAGES],
        [str(venv_python()), "-c", "import clustpy.deep"],
    )
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise ClustPyError(f"{VENV}: {' '.join(step[-2:])} failed ({last})")
    (VENV / ".gitignore").write_text("*\n")
    READY.write_text(" ".join(PACKAGES) + "\n")
    return venv_python()


def epochs(method: str, config, default_epochs: tuple[int, int] = DEFAULT_EPOCHS) -> dict[str, int]:
    """ClustPy's (pretrain, clustering) epochs: its documented defaults, or matched to our
    schedule (alpha phase = pretraining, annealing + static periods = clustering)."""
    if method == "clustpy-vade-default":
        return {"pretrain_epochs": default_epochs[0], "clustering_epochs": default_epochs[1]}
    train = config.train
    return {"pretrain_epochs": train.alpha_epochs,
            "clustering_epochs": train.periods * (train.anneal_epochs + train.static_epochs)}


def cluster(train: np.ndarray, test: np.ndarray, classes: int, seed: int, epoch_counts: dict[str, int]) -> dict:
    """Fit ClustPy's VaDE on `train` (N, D floats in [0, 1]) and predict `test`, in the venv."""
    python = ensure_venv()
    with tempfile.TemporaryDirectory(prefix="clustpy-") as temporary:
        folder = Path(temporary)
        np.save(folder / "train.npy", train.astype(np.float32))
        np.save(folder / "test.npy", test.astype(np.float32))
        request = {"n_clusters": classes, "random_state": seed, **epoch_counts}
        (folder / "request.json").write_text(json.dumps(request))
        done = subprocess.run([str(python), __file__, str(folder)], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=""))
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise ClustPyError(f"clustpy VaDE failed ({last})")
        result = json.loads((folder / "result.json").read_text())
    return {"clusters": np.asarray(result.pop("labels")), "train_seconds": result.pop("fit_seconds"),
            "curve": [], "epochs": sum(epoch_counts.values()), "details": {**request, **result}}


def main(folder: Path) -> None:
    """Inside the venv: fit, predict, write result.json."""
    import clustpy
    import torch
    from clustpy.deep import VaDE

    request = json.loads((folder / "request.json").read_text())
    train, test = np.load(folder / "train.npy"), np.load(folder / "test.npy")
    model = VaDE(device="cpu", **request)  # everything else: ClustPy's documented defaults
    started = time.perf_counter()
    model.fit(train)
    seconds = time.perf_counter() - started
    labels = model.predict(test)  # its documented predict: the final full-covariance GMM
    result = {"labels": labels.tolist(), "fit_seconds": seconds, "clustpy": clustpy.__version__,
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    (folder / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
