from __future__ import annotations

import collections
import re

import pytest
import torch

from edge_bus.data.preprocess import PreprocessSpec
from edge_bus.errors import CheckpointError
from edge_bus.models import create
from edge_bus.training.checkpoint import load_checkpoint, save_checkpoint


def _save(path, model):
    return save_checkpoint(path, model, model="unet", model_kwargs={"width": 2}, task="segmentation",
                           classes=["benign", "malignant", "normal"], preprocessing=PreprocessSpec(size=64),
                           split_hash="abc", metrics={"val": {"score": 0.5}})


def test_round_trip_rebuilds_the_same_network(tmp_path):
    torch.manual_seed(0)
    model = create("unet", width=2).eval()
    path = _save(tmp_path / "c.pt", model)
    ckpt = load_checkpoint(path)
    assert ckpt.preprocessing == PreprocessSpec(size=64) and ckpt.split_hash == "abc"
    assert ckpt.versions["torch"] == str(torch.__version__)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.build_model()(x), model(x))


def test_corrupt_file_names_the_file(tmp_path):
    path = _save(tmp_path / "c.pt", create("unet", width=2))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="c.pt.*corrupt"):
        load_checkpoint(path)


def test_unknown_format_and_pickles_are_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "raw.pt")
    with pytest.raises(CheckpointError, match="raw.pt.*unknown checkpoint format"):
        load_checkpoint(tmp_path / "raw.pt")

    # An arbitrary pickled object: weights_only=True must refuse it.
    torch.save({"format": "edge-bus-checkpoint", "obj": collections.Counter("ab")}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_weights_that_do_not_fit_the_model(tmp_path):
    path = _save(tmp_path / "c.pt", create("unet", width=4))  # saved says width 2
    with pytest.raises(CheckpointError, match="do not fit") as info:
        load_checkpoint(path).build_model()
    msg = str(info.value)
    assert "shape mismatch" in msg and len(msg) < 700 and "\n" not in msg
    path = _save(tmp_path / "d.pt", create("unet", width=2, depth=2))  # fewer levels: keys missing
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path).build_model()
    msg = str(info.value)
    assert re.search(r"\d+ missing key\(s\): [^;]*, \.\.\.;", msg) and len(msg) < 700


def test_a_json_file_is_not_a_torch_checkpoint(tmp_path):
    p = tmp_path / "ensemble.json"
    p.write_text('{"format": "edge-bus-ensemble"}')
    with pytest.raises(CheckpointError, match="ensemble.json: not a torch checkpoint.*JSON"):
        load_checkpoint(p)
