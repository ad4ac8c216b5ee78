import pickle

import numpy as np
import pytest
import torch

from astrovader.errors import InputError
from astrovader.train.checkpoint import load_safe, save_safe


def test_round_trip_of_a_lightning_like_checkpoint(tmp_path, monkeypatch):
    weight = torch.randn(3, 4)
    checkpoint = {
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.6",
        "state_dict": {"model.w": weight, "model.view": weight[0]},  # shared storage is fine
        "optimizer_states": [{"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.ones(3)}},
                              "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "params": [0]}]}],
        "loops": {"fit_loop": {"epoch_progress": {"total": {"ready": 4, "completed": 3}}}},
        "array": np.arange(5), "none": None, "flag": True, "inf": float("inf"),
    }
    path = save_safe(checkpoint, tmp_path / "last.ckpt")
    # Loading must never unpickle.
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    loaded = load_safe(path)
    torch.testing.assert_close(loaded["state_dict"]["model.w"], weight)
    torch.testing.assert_close(loaded["state_dict"]["model.view"], weight[0])
    state = loaded["optimizer_states"][0]
    assert list(state["state"]) == [0] and state["param_groups"][0]["betas"] == (0.9, 0.999)
    np.testing.assert_array_equal(loaded["array"], np.arange(5))
    assert loaded["loops"] == checkpoint["loops"] and loaded["inf"] == float("inf")
    assert (loaded["epoch"], loaded["none"], loaded["flag"]) == (3, None, True)
    assert not list(tmp_path.glob("*.part")), "temporary files left behind"


def test_unknown_objects_are_refused_and_bad_files_named(tmp_path):
    with pytest.raises(TypeError, match="cannot store"):
        save_safe({"x": object()}, tmp_path / "x.ckpt")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(InputError, match="bad.ckpt"):
        load_safe(bad)
