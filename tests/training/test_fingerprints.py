"""Weights and pack fingerprints: a table row names exactly the weights and pixels it measured,
a retrain on the same machine gives the same weights, and altered or replaced weights are caught."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edge_bus.cli import app
from edge_bus.data.pack import load_pack
from edge_bus.errors import CheckpointError
from edge_bus.fingerprint import state_dict_sha256
from edge_bus.models import create
from edge_bus.training.checkpoint import load_checkpoint
from edge_bus.training.evaluate import evaluate
from edge_bus.training.loop import TrainConfig, train

runner = CliRunner()


def test_state_dict_fingerprint_covers_names_shapes_dtypes_and_values():
    torch.manual_seed(0)
    sd = create("unet", width=2).state_dict()
    base = state_dict_sha256(sd)
    assert base == state_dict_sha256({k: v.clone() for k, v in sd.items()})
    key = next(k for k, v in sd.items() if v.is_floating_point() and v.numel() > 1)
    nudged = dict(sd)
    nudged[key] = torch.nextafter(sd[key], torch.full_like(sd[key], 2.0))  # one ulp: invisible to allclose
    assert state_dict_sha256(nudged) != base
    assert state_dict_sha256({**sd, key: sd[key].reshape(-1)}) != base
    assert state_dict_sha256({**sd, key: sd[key].double()}) != base
    renamed = {("x." + k if k == key else k): v for k, v in sd.items()}
    assert state_dict_sha256(renamed) != base


def test_retraining_with_the_same_seed_gives_the_same_weights(trained_unets, synthetic_pack, tmp_path):
    # the fixture's seed-0 run, repeated with the same options
    cfg = TrainConfig(model="unet", pack=synthetic_pack, out=tmp_path, epochs=5, batch_size=2, lr=3e-3, device="cpu",
                      seed=0, model_kwargs={"width": 4}, progress=False)
    again = load_checkpoint(train(cfg).best_checkpoint)
    first, other_seed = (load_checkpoint(r.best_checkpoint) for r in trained_unets)
    assert again.weights_sha256 == first.weights_sha256 == state_dict_sha256(first.state_dict)
    assert other_seed.weights_sha256 != first.weights_sha256
    record = first.train
    assert record["pack_sha256"] == load_pack(synthetic_pack).content_sha256()
    assert record["threads"] == torch.get_num_threads()
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and record["cpu"]


def test_weights_altered_after_training_are_refused(trained_unets, tmp_path):
    path = tmp_path / "altered.pt"
    data = torch.load(trained_unets[0].best_checkpoint, weights_only=True)
    key = next(k for k, v in data["state_dict"].items() if v.is_floating_point())
    data["state_dict"][key] = data["state_dict"][key] + 1e-3
    torch.save(data, path)
    with pytest.raises(CheckpointError, match=r"altered.pt: its weights do not match the fingerprint saved with them"):
        load_checkpoint(path)
    assert load_checkpoint(path, mmap=True).model == "unet"  # metadata reads skip the check
    del data["weights_sha256"]  # a file written before fingerprints: nothing to check, the fingerprint is computed
    torch.save(data, path)
    assert load_checkpoint(path).weights_sha256 == state_dict_sha256(data["state_dict"])
    assert load_checkpoint(path, mmap=True).weights_sha256 == ""


def test_report_names_the_weights_and_the_pack_it_measured(trained_unets, synthetic_pack, tmp_path):
    ckpt = load_checkpoint(trained_unets[0].best_checkpoint)
    report = evaluate(ckpt.path, synthetic_pack, tmp_path / "e")
    assert report["weights_sha256"] == ckpt.weights_sha256 == state_dict_sha256(ckpt.build_model().state_dict())
    assert report["pack_sha256"] == report["train"]["pack_sha256"] == load_pack(synthetic_pack).content_sha256()
    text = (tmp_path / "e" / "report.md").read_text()
    assert f"`{ckpt.weights_sha256[:16]}`" in text and "(the pack it was trained on)" in text
    assert f"- trained on: cpu, {ckpt.train['cpu']}, {ckpt.train['cpu_capability']} kernels, {ckpt.train['threads']} threads" in text
    # the same split packed with other pixels (as another OpenCV would resize them): said, not hidden
    with np.load(synthetic_pack) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["test_images"] = arrays["test_images"] ^ np.uint8(1)
    np.savez_compressed(tmp_path / "other.npz", **arrays)
    other = evaluate(ckpt.path, tmp_path / "other.npz", tmp_path / "x")
    assert other["pack_sha256"] != other["train"]["pack_sha256"]
    assert f"(not the pack it was trained on, `{other['train']['pack_sha256'][:16]}`" in (tmp_path / "x" / "report.md").read_text()
    # a checkpoint written before fingerprints: the report computes the fingerprint of what it loaded
    data = torch.load(ckpt.path, weights_only=True)
    del data["weights_sha256"]
    torch.save(data, tmp_path / "old.pt")
    assert evaluate(tmp_path / "old.pt", synthetic_pack, tmp_path / "o")["weights_sha256"] == ckpt.weights_sha256


def test_ensemble_refuses_a_member_retrained_in_place(trained_unets, synthetic_pack, tmp_path):
    members = [tmp_path / "a.pt", tmp_path / "b.pt"]
    for result, member in zip(trained_unets, members):
        shutil.copy(result.best_checkpoint, member)
    old_member = torch.load(members[1], weights_only=True)  # b.pt written before fingerprints: still protected
    del old_member["weights_sha256"]
    torch.save(old_member, members[1])
    res = runner.invoke(app, ["train", "ensemble", "--pack", str(synthetic_pack), "--out", str(tmp_path / "ens"),
                              "--member", str(members[0]), "--member", str(members[1])])
    assert res.exit_code == 0, res.output
    ensemble_file = tmp_path / "ens" / "ensemble.json"
    recorded = json.loads(ensemble_file.read_text())["member_weights_sha256"]
    assert recorded == [load_checkpoint(m).weights_sha256 for m in members]
    assert recorded[1] == state_dict_sha256(old_member["state_dict"])
    report = evaluate(ensemble_file, synthetic_pack, tmp_path / "e1")
    assert report["member_weights_sha256"] == recorded

    shutil.copy(trained_unets[0].best_checkpoint, members[1])  # b.pt retrained: same split, other weights
    res = runner.invoke(app, ["evaluate", str(ensemble_file), "--pack", str(synthetic_pack), "--out", str(tmp_path / "e2")])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "b.pt" in text and "refit the ensemble" in text and recorded[1][:12] in text
    assert not (tmp_path / "e2" / "report.json").exists()

    data = json.loads(ensemble_file.read_text())  # written before fingerprints: no check, the loaded members quoted
    del data["member_weights_sha256"]
    ensemble_file.write_text(json.dumps(data))
    loaded_now = [load_checkpoint(m).weights_sha256 for m in members]
    assert evaluate(ensemble_file, synthetic_pack, tmp_path / "e3")["member_weights_sha256"] == loaded_now
