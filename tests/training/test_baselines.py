from __future__ import annotations

import json

import numpy as np
import torch
from typer.testing import CliRunner

from edge_bus.cli import app
from edge_bus.data.synthetic import phantom_frame
from edge_bus.metrics import iou_per_image
from edge_bus.models.classical import fit_classical, load_classical
from edge_bus.models.ensemble import EnsembleSegmenter, choose_weights, load_ensemble

runner = CliRunner()


def _phantoms(n: int, seed: int, size: int = 64):
    rng = np.random.default_rng(seed)
    frames = [phantom_frame(rng, (size, size), lesion=(i % 4 != 0)) for i in range(n)]
    return np.stack([f[0] for f in frames]), np.stack([f[1] for f in frames])


def test_classical_beats_an_empty_prediction_on_held_out_phantoms():
    train_x, train_y = _phantoms(32, seed=1)
    test_x, test_y = _phantoms(24, seed=2)
    segmenter, search = fit_classical(train_x, train_y)
    assert search[0]["iou_all_images"] >= search[-1]["iou_all_images"]
    ours = iou_per_image(segmenter.predict_batch(test_x), test_y).mean()
    empty = iou_per_image(np.zeros_like(test_y), test_y).mean()  # 0.25: only the normal images
    assert ours > empty + 0.2


def test_classical_cli_fit_and_evaluate(synthetic_pack, tmp_path):
    res = runner.invoke(app, ["train", "classical", "--pack", str(synthetic_pack), "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    model = load_classical(tmp_path / "c" / "classical.json")
    assert model.preprocessing.size == 64 and "train" in model.metrics
    res = runner.invoke(app, ["evaluate", str(tmp_path / "c" / "classical.json"), "--pack", str(synthetic_pack),
                              "--out", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["model"] == "classical" and report["segmentation"]["all_images"]["n"] == report["n"]


def test_chosen_weights_beat_or_match_the_plain_mean():
    rng = np.random.default_rng(0)
    _, gts = _phantoms(12, seed=3, size=32)
    good = np.clip(gts + rng.normal(0, 0.2, gts.shape), 0, 1)
    noisy = rng.random(gts.shape)
    choice = choose_weights(np.stack([good, noisy, noisy]), gts)
    assert choice["iou_weighted"] >= choice["iou_mean"]
    assert choice["weights"][0] > 0.5
    assert abs(sum(choice["weights"]) - 1) < 1e-6


def test_ensemble_module_combines_probabilities():
    a, b = torch.nn.Conv2d(1, 1, 1), torch.nn.Conv2d(1, 1, 1)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        only_a = EnsembleSegmenter([a, b], [1.0, 0.0])
        assert list(only_a.members) == [a], "a zero-weight member must not be run"
        torch.testing.assert_close(torch.sigmoid(only_a(x)), torch.sigmoid(a(x)), atol=1e-5, rtol=1e-4)
        weighted = torch.sigmoid(EnsembleSegmenter([a, b, torch.nn.Conv2d(1, 1, 1)], [3.0, 1.0, 0.0])(x))
        torch.testing.assert_close(weighted, 0.75 * torch.sigmoid(a(x)) + 0.25 * torch.sigmoid(b(x)), atol=1e-5, rtol=1e-4)
        mean = torch.sigmoid(EnsembleSegmenter([a, b])(x))
        torch.testing.assert_close(mean, (torch.sigmoid(a(x)) + torch.sigmoid(b(x))) / 2, atol=1e-5, rtol=1e-4)


def test_ensemble_cli_on_val_then_evaluate(trained_unets, synthetic_pack, tmp_path):
    members = [str(r.best_checkpoint) for r in trained_unets]
    res = runner.invoke(app, ["train", "ensemble", "--pack", str(synthetic_pack), "--out", str(tmp_path / "ens"),
                              "--member", members[0], "--member", members[1]])
    assert res.exit_code == 0, res.output
    ens = load_ensemble(tmp_path / "ens" / "ensemble.json")
    val = ens.metrics["val"]
    assert val["iou_all_images_weighted"] >= val["iou_all_images_mean"]
    assert [p.resolve() for p in ens.members] == [r.best_checkpoint.resolve() for r in trained_unets]
    res = runner.invoke(app, ["evaluate", str(tmp_path / "ens" / "ensemble.json"), "--pack", str(synthetic_pack),
                              "--out", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "e" / "report.json").read_text())["model"].startswith("ensemble")


def test_ensemble_cli_mean_mode_keeps_equal_weights(trained_unets, synthetic_pack, tmp_path):
    members = [str(r.best_checkpoint) for r in trained_unets]
    res = runner.invoke(app, ["train", "ensemble", "--mode", "mean", "--pack", str(synthetic_pack), "--out", str(tmp_path / "m"),
                              "--member", members[0], "--member", members[1]])
    assert res.exit_code == 0, res.output
    ens = load_ensemble(tmp_path / "m" / "ensemble.json")
    assert ens.mode == "mean" and ens.weights == [0.5, 0.5]
    assert set(ens.metrics["val"]) == {"iou_all_images_mean"}
    res = runner.invoke(app, ["evaluate", str(tmp_path / "m" / "ensemble.json"), "--pack", str(synthetic_pack),
                              "--out", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "e" / "report.json").read_text())["model"] == "ensemble (mean)"


def test_classical_scored_keeps_one_component_or_none():
    train_x, train_y = _phantoms(24, seed=4)
    segmenter, search = fit_classical(train_x, train_y)
    assert segmenter.params.method == "scored" and search[0]["params"]["method"] == "scored"
    import cv2

    for pred in segmenter.predict_batch(train_x):
        n, _ = cv2.connectedComponents(pred.astype(np.uint8))
        assert n - 1 <= 1
    # a min_score above every candidate's score predicts nothing, so normal images can score 1
    from dataclasses import replace

    from edge_bus.models.classical import ClassicalSegmenter

    silent = ClassicalSegmenter(replace(segmenter.params, min_score=1e9))
    assert not silent.predict_batch(train_x).any()


def test_first_version_classical_files_still_load_and_predict_the_same(tmp_path):
    from edge_bus.models.classical import ClassicalParams, ClassicalSegmenter

    old_params = {"percentile": 15.0, "kernel": 9, "min_area": 0.002, "max_ratio": 1.0, "blur": 2.0}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({
        "format": "edge-bus-classical", "version": 1, "model": "classical", "task": "segmentation", "params": old_params,
        "preprocessing": {"size": 64, "mean": 0.33, "std": 0.22}, "classes": ["benign", "malignant", "normal"],
    }))
    model = load_classical(path)
    assert model.segmenter.params.method == "largest"
    x, _ = _phantoms(6, seed=5)
    expected = ClassicalSegmenter(ClassicalParams(**old_params, method="largest")).predict_batch(x)
    assert np.array_equal(model.segmenter.predict_batch(x), expected)


def _copy_with_split(src, dst, split_hash):
    data = torch.load(src, map_location="cpu", weights_only=True)
    data["split_hash"] = split_hash
    torch.save(data, dst)
    return dst


def test_ensemble_refuses_any_member_trained_on_another_split(trained_unets, synthetic_pack, tmp_path):
    a, b = (str(r.best_checkpoint) for r in trained_unets)
    other = _copy_with_split(b, tmp_path / "other_split.pt", "f" * 64)
    # the differing member is not the first one: every member is checked
    res = runner.invoke(app, ["train", "ensemble", "--pack", str(synthetic_pack), "--out", str(tmp_path / "ens"),
                              "--member", a, "--member", b, "--member", str(other)])
    assert res.exit_code == 2
    assert "other_split.pt" in res.output and "ffffffffffff" in res.output
    assert not (tmp_path / "ens" / "ensemble.json").exists()
    unknown = _copy_with_split(b, tmp_path / "no_split.pt", "")
    res = runner.invoke(app, ["train", "ensemble", "--pack", str(synthetic_pack), "--out", str(tmp_path / "ens"),
                              "--member", a, "--member", str(unknown)])
    assert res.exit_code == 2 and "no_split.pt" in res.output and "no split hash" in res.output


def test_fit_ensemble_and_the_cli_share_one_validator(trained_unets, synthetic_pack, tmp_path):
    import pytest

    from edge_bus.errors import ConfigError
    from edge_bus.models.ensemble import ENSEMBLE_MODES, check_ensemble_options
    from edge_bus.training.baselines import fit_ensemble

    assert ENSEMBLE_MODES == ("weighted", "mean")
    good = trained_unets[0].best_checkpoint
    missing = tmp_path / "missing.pt"
    for members, mode, message in (([good, good], "median", "--mode 'median': use weighted or mean"),
                                   ([good], "mean", "at least 2 --member"),
                                   ([good, missing], "weighted", "--member " + str(missing))):
        with pytest.raises(ConfigError) as direct:
            check_ensemble_options(members, mode)
        with pytest.raises(ConfigError) as fitted:
            fit_ensemble(members, synthetic_pack, tmp_path / "ens", mode=mode)
        assert message in str(direct.value) and str(fitted.value) == str(direct.value)
        args = [a for m in members for a in ("--member", str(m))]
        res = runner.invoke(app, ["train", "ensemble", "--mode", mode, "--pack", str(synthetic_pack), "--out", str(tmp_path / "c"), *args])
        assert res.exit_code == 2 and str(direct.value) in " ".join(res.output.split()), res.output
