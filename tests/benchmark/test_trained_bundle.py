"""A trained-like bundle at a non-256 size, scored on a labelled folder: the benchmark's accuracy
numbers must equal edge_bus.metrics computed here directly (ONNX Runtime / torch, sigmoid > threshold)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_bus.cli import app

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

SIZE = 64
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_busi):
    """(bundles folder, split manifest path, checkpoint path): a U-Net 'trained' on the fixture's split."""
    from edge_bus.data.busi import CLASSES, index_busi
    from edge_bus.data.preprocess import PreprocessSpec
    from edge_bus.data.split import make_split, write_split
    from edge_bus.exporting import export_bundle
    from edge_bus.models import create
    from edge_bus.training.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("trained")
    split = make_split(index_busi(synthetic_busi), seed=0, ratios={"train": 0.4, "val": 0.2, "test": 0.4})
    split_path = root / "split.json"
    write_split(split, split_path)
    torch.manual_seed(0)
    model = create("unet", width=4, depth=2).eval()
    _shift_to_median(model, synthetic_busi)  # about half the pixels positive: IoU/Dice neither 0 nor 1
    ckpt = save_checkpoint(root / "unet.pt", model, model="unet", model_kwargs={"width": 4, "depth": 2},
                           task="segmentation", classes=list(CLASSES), preprocessing=PreprocessSpec(size=SIZE),
                           threshold=0.5, split_hash=split.hash, dataset_sha256=split.dataset_sha256, train={"epochs": 1})
    export_bundle(ckpt, root / "bundles" / "unet", formats="onnx,onnx_int8", batch_range=(1, 4),
                  data=synthetic_busi, split=split_path, parity_images=4, calibration_images=4)
    return root / "bundles", split_path, ckpt


def _shift_to_median(model, root) -> None:
    """Move the output bias so that the median logit over the folder's images is zero."""
    from edge_bus.data.preprocess import PreprocessSpec, normalize, read_image, resize_gray

    images = np.stack([resize_gray(read_image(p), SIZE) for p in sorted(root.glob("*/*.png")) if "_mask" not in p.name])
    with torch.inference_mode():
        logits = model(torch.from_numpy(normalize(images, PreprocessSpec(size=SIZE)).astype(np.float32)))
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels == 1][-1]
    with torch.no_grad():
        last.bias -= float(logits.median())


def _direct_scores(logits: np.ndarray, masks: np.ndarray) -> dict:
    from edge_bus import metrics

    preds = (1.0 / (1.0 + np.exp(-logits[:, 0].astype(np.float64))) > 0.5).astype(np.uint8)
    report = metrics.segmentation_report(preds, masks)
    return {"iou": report["all_images"]["iou"], "dice": report["all_images"]["dice"],
            "iou_lesion_only": report["lesion_only"]["iou"], "dice_lesion_only": report["lesion_only"]["dice"]}


def test_trained_bundle_accuracy_matches_metrics_computed_directly(trained, synthetic_busi, tmp_path):
    from edge_bus.data.busi import Sample, load_sample
    from edge_bus.data.preprocess import PreprocessSpec, normalize
    from edge_bus.data.split import load_split
    from edge_bus.training.checkpoint import load_checkpoint

    bundles, split_path, ckpt = trained
    manifest = json.loads((bundles / "unet" / "manifest.json").read_text())
    assert manifest["classes"] == ["lesion"] and manifest["input"]["shape"][-1] == SIZE
    out = tmp_path / "out"
    # No --model: every bundle in --bundles. --allow-rejected: a random tiny net may miss the INT8 gate.
    result = runner.invoke(app, [
        "benchmark", "--bundles", str(bundles), "--data", str(synthetic_busi), "--split", str(split_path),
        "--precision", "fp32,int8", "--batch", "1,2", "--allow-rejected", "--no-plots", "--no-progress",
        "--source", "synthetic://?fps=0&size=80x60", "--iters", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "benchmark.json").read_text())
    assert any(f"accuracy at {SIZE}x{SIZE}" in n for n in data["notes"]), data["notes"]

    # The test split of the manifest, THE preprocessing at the bundle's size, computed here.
    items = load_split(split_path).items("test")
    pairs = [load_sample(Sample(i.id, i.label, synthetic_busi / i.image, [synthetic_busi / m for m in i.masks], 0, 0), SIZE)
             for i in items]
    images = np.stack([p[0] for p in pairs])
    masks = np.stack([p[1] for p in pairs])
    x = normalize(images, PreprocessSpec(size=SIZE)).astype(np.float32)
    assert x.shape == (len(items), 1, SIZE, SIZE)
    expected = {}
    for precision, name in (("fp32", "model.onnx"), ("int8", "model.int8.onnx")):
        session = ort.InferenceSession(str(bundles / "unet" / name), providers=["CPUExecutionProvider"])
        expected[precision] = _direct_scores(session.run(None, {"input": x})[0], masks)
    with torch.inference_mode():
        reference = _direct_scores(load_checkpoint(ckpt).build_model()(torch.from_numpy(x)).numpy(), masks)

    rows = {(r["backend"], r["precision"], r["batch"]): r for r in data["results"]}
    assert set(rows) == {("pytorch-eager", "fp32", 1), ("onnxruntime", "fp32", 1), ("onnxruntime", "fp32", 2),
                         ("onnxruntime", "int8", 1), ("onnxruntime", "int8", 2)}
    for (backend, precision, _), row in rows.items():
        assert row["latency_only"] is False
        want = reference if backend == "pytorch-eager" else expected[precision]
        assert row["accuracy"]["n"] == len(items)
        assert 0.0 < row["accuracy"]["iou"] < 1.0 and 0.0 < row["accuracy"]["dice_lesion_only"] < 1.0
        for key, value in want.items():
            assert row["accuracy"][key] == pytest.approx(value, abs=1e-9), (backend, precision, key)
        for key, value in reference.items():  # every row carries the checkpoint's FP32 reference
            assert row["accuracy_reference"][key] == pytest.approx(value, abs=1e-6), (backend, precision, key)
        if backend != "pytorch-eager":  # and how far it is from it, paired by image
            v = row["accuracy_vs_reference"]
            assert v["figure"] == "iou"
            assert v["difference"] == pytest.approx(row["accuracy"]["iou"] - row["accuracy_reference"]["iou"], abs=1e-9)
            assert v["interval"][0] <= v["difference"] <= v["interval"][1]
    # One runtime-pipeline row per backend x precision, at the largest batch, labelled with what ran.
    pipe = {(p["backend"], p["precision"]): p for p in data["pipeline"]}
    assert set(pipe) == {("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    for (_, precision), p in pipe.items():
        assert p["batch"] == 2 and p["frames"] >= 1 and p["fps"] > 0
        seq = rows[("onnxruntime", precision, 2)]["throughput_fps"]
        assert p["sequential_fps"] == pytest.approx(seq)
        assert p["fps_ratio_vs_sequential"] == pytest.approx(p["fps"] / seq)
        total = p["latency_ms"]["total"]
        assert 0 < total["p50"] <= total["p90"] <= total["p99"]
    md = (out / "benchmark.md").read_text()
    assert "End to end through the runtime pipeline" in md and "| unet | onnxruntime | int8 | 2 |" in md
    v = rows[("onnxruntime", "int8", 1)]["accuracy_vs_reference"]
    assert f"{v['difference']:+.3f} [{v['interval'][0]:+.3f}, {v['interval'][1]:+.3f}]" in md
    assert "paired 95 % bootstrap interval" in md


def test_changed_checkpoint_gives_no_reference(trained, synthetic_busi, tmp_path):
    """A checkpoint whose hash is not the one the bundle records is not used as the FP32 reference."""
    import shutil

    bundles, split_path, ckpt = trained
    copy = tmp_path / "bundles"
    shutil.copytree(bundles, copy)
    other = tmp_path / "other.pt"
    other.write_bytes(ckpt.read_bytes() + b"\0")  # another file at the recorded path would hash differently
    manifest = json.loads((copy / "unet" / "manifest.json").read_text())
    manifest["provenance"]["checkpoint"] = str(other)
    (copy / "unet" / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    result = runner.invoke(app, [
        "benchmark", "--bundles", str(copy), "--data", str(synthetic_busi), "--split", str(split_path), "--batch", "1",
        "--no-baseline", "--no-pipeline", "--allow-rejected", "--no-plots", "--no-progress",
        "--source", "synthetic://?fps=0&size=80x60", "--iters", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "benchmark.json").read_text())
    row = data["results"][0]
    assert row["accuracy"] is not None and row["accuracy_reference"] is None and row["accuracy_vs_reference"] is None
    assert any("no PyTorch FP32 reference" in n and "changed since the export" in n for n in data["notes"]), data["notes"]
    assert data["pipeline"] == []


def test_ensemble_bundle_gets_its_eager_baseline_and_reference(trained, synthetic_busi, tmp_path):
    """An ensemble bundle records an ensemble file, not a checkpoint: the baseline and the FP32
    reference are that ensemble, rebuilt from its members; a member changed since the export is refused."""
    import shutil

    from edge_bus.benchmarking.baseline import eager_model
    from edge_bus.bundle import open_bundle
    from edge_bus.data.busi import CLASSES
    from edge_bus.data.preprocess import PreprocessSpec
    from edge_bus.exporting import export_bundle
    from edge_bus.models.ensemble import EnsembleModel, EnsembleSegmenter, save_ensemble
    from edge_bus.training.checkpoint import load_checkpoint

    _, split_path, ckpt = trained
    members = [tmp_path / "a.pt", tmp_path / "b.pt"]
    for m in members:
        shutil.copy(ckpt, m)
    c = load_checkpoint(ckpt)
    ens_file = save_ensemble(tmp_path / "ens" / "ensemble.json", EnsembleModel(
        path=None, members=members, weights=[0.75, 0.25], mode="weighted", preprocessing=PreprocessSpec(size=SIZE),
        classes=list(CLASSES), split_hash=c.split_hash, dataset_sha256=c.dataset_sha256))
    export_bundle(ens_file, tmp_path / "bundle", formats="onnx", batch_range=(1, 2), data=synthetic_busi,
                  split=split_path, parity_images=2)
    bundle = open_bundle(tmp_path / "bundle")

    eager = eager_model(bundle, device="cpu")
    assert eager.trained, eager.reason
    x = np.random.default_rng(0).normal(0, 1, (2, 1, SIZE, SIZE)).astype(np.float32)
    with torch.inference_mode():
        direct = EnsembleSegmenter([load_checkpoint(m).build_model() for m in members], [0.75, 0.25])(torch.from_numpy(x))
    np.testing.assert_allclose(eager.infer(x), direct.numpy(), rtol=1e-5, atol=1e-5)

    members[1].write_bytes(members[1].read_bytes() + b"\0")
    changed = eager_model(bundle, device="cpu")
    assert not changed.trained and "member checkpoint" in changed.reason
