"""Atomic writes: the file appears whole or not at all, with the usual permissions."""

import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from astrovader.atomic import write_with, write_text_atomic


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_get_the_usual_permissions_even_through_a_replacing_writer(tmp_path, umask_022):
    def replace(temporary):  # a writer that puts a new 0600 file in place of the temporary one
        own = temporary.with_name("own")
        own.write_bytes(b"data")
        os.chmod(own, 0o600)
        os.replace(own, temporary)

    write_with(tmp_path / "replaced.bin", replace)
    write_with(tmp_path / "model.safetensors", lambda path: save_file({"w": torch.zeros(2)}, str(path)))
    write_text_atomic(tmp_path / "notes.txt", "in place")
    for name in ("replaced.bin", "model.safetensors", "notes.txt"):
        assert mode(tmp_path / name) == 0o644, name
    assert (tmp_path / "replaced.bin").read_bytes() == b"data"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.safetensors", "notes.txt", "replaced.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    write_text_atomic(tmp_path / "kept.txt", "old")

    def fail(temporary):
        temporary.write_text("half")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        write_with(tmp_path / "kept.txt", fail)
    assert (tmp_path / "kept.txt").read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["kept.txt"]
