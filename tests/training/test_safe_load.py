from __future__ import annotations

import pickle

import pytest
import torch

from edge_bus.errors import CheckpointError
from edge_bus.training.loop import LAST_STATE_NAME, TrainConfig, train
from edge_bus.training.safe_load import safe_torch_load


def _corrupt_files(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(3)}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    text = tmp_path / "text.pt"
    text.write_text("hello")
    unsafe = tmp_path / "unsafe.pt"
    with open(unsafe, "wb") as handle:  # a pickled object weights_only must refuse
        pickle.dump(CheckpointError("x"), handle)
    return good, [truncated, text, unsafe]


def test_safe_load_reads_good_files_and_names_bad_ones_in_one_line(tmp_path):
    good, bad = _corrupt_files(tmp_path)
    assert torch.equal(safe_torch_load(good)["w"], torch.ones(3))
    for path in bad:
        with pytest.raises(CheckpointError) as err:
            safe_torch_load(path, what="thing", hint="do X")
        msg = str(err.value)
        assert msg.startswith(f"{path}: not a readable thing (") and msg.endswith("; do X") and "\n" not in msg
    with pytest.raises(CheckpointError, match="missing.pt: no such thing"):
        safe_torch_load(tmp_path / "missing.pt", what="thing")


def test_resume_from_a_corrupt_last_state_is_a_one_line_error(synthetic_pack, tmp_path):
    _, bad = _corrupt_files(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    (out / LAST_STATE_NAME).write_bytes(bad[0].read_bytes())
    cfg = TrainConfig(model="unet", pack=synthetic_pack, out=out, epochs=1, device="cpu", resume=True,
                      model_kwargs={"width": 2}, progress=False)
    with pytest.raises(CheckpointError) as err:
        train(cfg)
    msg = str(err.value)
    assert msg.startswith(f"{out / LAST_STATE_NAME}: not a readable last-state file (") and "\n" not in msg
    assert msg.endswith("train without --resume")
