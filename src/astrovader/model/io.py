"""The final model on disk: `model.safetensors` (weights) + `model.json` (config, preprocessing,
class names, parameter counts). Loading never unpickles anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from astrovader.atomic import read_json, write_json_atomic, write_with
from astrovader.config import Config
from astrovader.errors import InputError
from astrovader.hardware import choose_precision
from astrovader.model.vade import VaDE

WEIGHTS, METADATA = "model.safetensors", "model.json"


def save_model(folder: Path, model: VaDE, config: Config, label_names: list[str] | None = None,
               extra: dict[str, Any] | None = None) -> Path:
    folder = Path(folder)
    state = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.state_dict().items()}
    write_with(folder / WEIGHTS, lambda path: save_file(state, str(path)))
    write_json_atomic(folder / METADATA, {
        "format": "astrovader-model/1",
        "config": config.to_dict(),
        "preprocessing": config.data.model_dump(mode="json"),
        "label_names": label_names,
        "parameters": model.parameter_count(),
        **(extra or {}),
    })
    return folder


def load_model(folder: str | Path) -> tuple[VaDE, dict[str, Any]]:
    """(model in eval mode on the CPU, metadata) from a run folder or its model.json's folder.
    The precision is the one training would pick on this CPU (`hardware.choose_precision`), so
    that the Python API, `predict`, `generate` and the report give the same components."""
    folder = Path(folder)
    if not (folder / METADATA).exists() or not (folder / WEIGHTS).exists():
        raise InputError(f"{folder}: no trained model ({WEIGHTS} + {METADATA}); train one or resume the run")
    metadata = read_json(folder / METADATA)
    config = Config.from_dict(metadata["config"], source=str(folder / METADATA))
    model = VaDE(config)
    try:
        state = load_file(str(folder / WEIGHTS))
    except Exception as error:  # noqa: BLE001 - any parse failure means a bad file
        raise InputError(f"{folder / WEIGHTS}: not a readable safetensors model ({error})") from None
    state.setdefault("noise_sigma", model.noise_sigma)  # saved before model.noise: each image's own sigma
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise InputError(f"{folder / WEIGHTS}: its weights do not fit the network {METADATA} describes "
                         f"({' '.join(str(error).split())})") from None
    model.set_precision(choose_precision(config.train.precision, "cpu"))
    return model.eval(), metadata
