"""Model checkpoints: only trainable tensors + embedded config, atomic writes, errors that
name the mismatch, corrupt files refused, and nothing ever unpickled."""
from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import load_file

from test_training import TinySegmenter
from zs3_core.model_checkpoint import (CheckpointMismatchError, CorruptCheckpointError,
                                       load_model_checkpoint, load_training_state,
                                       read_checkpoint_config, read_checkpoint_info,
                                       save_model_checkpoint, save_training_state)

CONFIG = {"model": {"name": "tiny", "input_size": 32}, "train": {"iterations": 10}}


class Boobytrap:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_round_trip_stores_only_trainable_tensors_and_the_config(tmp_path):
    model = TinySegmenter()
    path = save_model_checkpoint(tmp_path / "m.safetensors", model, CONFIG, step=7, extra={"note": "x"})
    assert set(load_file(str(path))) == {"head.weight", "head.bias"}   # frozen backbone not stored
    other = TinySegmenter()
    with torch.no_grad():
        other.head.weight.zero_()
        other.backbone.weight.add_(1.0)
    info = load_model_checkpoint(path, other)
    assert torch.equal(other.head.weight, model.head.weight)
    assert not torch.equal(other.backbone.weight, model.backbone.weight)   # untouched
    assert read_checkpoint_config(path) == CONFIG
    assert (info["step"], info["extra"], info["model_name"]) == (7, {"note": "x"}, "tiny")
    assert read_checkpoint_info(path)["config"]["train"]["iterations"] == 10


def test_half_precision_checkpoints_store_fp16_and_load_back_into_fp32_parameters(tmp_path):
    model = TinySegmenter()
    path = save_model_checkpoint(tmp_path / "h.safetensors", model, CONFIG, step=1, dtype=torch.float16)
    assert {t.dtype for t in load_file(str(path)).values()} == {torch.float16}
    other = TinySegmenter()
    load_model_checkpoint(path, other)
    assert other.head.weight.dtype == torch.float32
    assert torch.equal(other.head.weight, model.head.weight.half().float())
    assert not torch.equal(other.head.weight, model.head.weight)      # rounded, as documented


def test_an_unknown_checkpoint_dtype_is_a_config_error():
    from training.config import TrainConfig
    from zs3_core.config import ConfigError

    with pytest.raises(ConfigError, match="checkpoint_dtype"):
        TrainConfig(checkpoint_dtype="int8")


def test_the_file_is_safetensors_not_a_pickle(tmp_path):
    path = save_model_checkpoint(tmp_path / "m.safetensors", TinySegmenter(), CONFIG, step=1)
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    assert path.read_bytes()[8:9] == b"{" and 0 < header_len < path.stat().st_size


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    import safetensors.torch

    path = save_model_checkpoint(tmp_path / "m.safetensors", TinySegmenter(), CONFIG, step=1)
    before = path.read_bytes()

    def crash_halfway(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x10\x00\x00\x00half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash_halfway)
    with pytest.raises(OSError, match="disk full"):
        save_model_checkpoint(path, TinySegmenter(), CONFIG, step=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]   # no temp file left


def test_a_checkpoint_of_another_architecture_names_the_mismatch(tmp_path):
    path = save_model_checkpoint(tmp_path / "ldvc.safetensors", TinySegmenter(name="ldvc"),
                                 {"model": {"name": "ldvc"}}, step=1)
    with pytest.raises(CheckpointMismatchError, match="checkpoint was trained for ldvc, config builds deop"):
        load_model_checkpoint(path, TinySegmenter(name="deop"))
    wider = TinySegmenter(name="ldvc", head_channels=16)
    with pytest.raises(CheckpointMismatchError) as err:
        load_model_checkpoint(path, wider)
    assert "head.weight: checkpoint [8, 8, 3, 3] vs model [16, 8, 3, 3]" in str(err.value)
    more = TinySegmenter(name="ldvc")
    more.extra = torch.nn.Linear(2, 2)
    with pytest.raises(CheckpointMismatchError, match=r"missing from checkpoint \(2\): extra.bias \[2\]"):
        load_model_checkpoint(path, more)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "pickle"])
def test_corrupt_or_pickled_files_are_refused_without_unpickling(tmp_path, damage):
    path = tmp_path / "m.safetensors"
    marker = tmp_path / "pwned"
    if damage == "pickle":
        path.write_bytes(pickle.dumps({"head.weight": Boobytrap(marker)}))
    else:
        save_model_checkpoint(path, TinySegmenter(), CONFIG, step=1)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00" * 64)
    with pytest.raises(CorruptCheckpointError):
        load_model_checkpoint(path, TinySegmenter())
    assert not marker.exists()


def test_training_state_loads_tensors_but_never_runs_pickled_code(tmp_path):
    optimizer = torch.optim.AdamW(TinySegmenter().head.parameters())
    path = save_training_state(tmp_path / "s.pt", {"optimizer": optimizer.state_dict(), "step": 3})
    assert load_training_state(path)["step"] == 3
    marker = tmp_path / "pwned"
    torch.save({"step": Boobytrap(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CorruptCheckpointError):
        load_training_state(tmp_path / "evil.pt")
    assert not marker.exists()
