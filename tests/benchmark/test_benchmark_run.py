"""A small end-to-end run on a tiny bundle, and the rejection of bad options before any work."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_bus.cli import app

runner = CliRunner()
SMALL = ["--source", "synthetic://?fps=0&size=64x48", "--iters", "4", "--warmup", "1", "--no-progress"]


def _run(args, env=None):
    return runner.invoke(app, ["benchmark", *args], env=env)


def test_small_run_writes_every_output(tiny_bundles, tmp_path):
    out = tmp_path / "out"
    result = _run(["--bundles", str(tiny_bundles), "--model", "unet", "--batch", "1,2", "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    for name in ("benchmark.json", "benchmark.md", "latency_vs_batch.png", "latency_hist.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "latency_vs_batch.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "benchmark.json").read_text())
    rows = data["results"]
    assert [(r["backend"], r["batch"]) for r in rows] == [("pytorch-eager", 1), ("onnxruntime", 1), ("onnxruntime", 2)]
    for r in rows:
        e = r["end_to_end_ms"]
        assert e["n"] == r["iterations"] == 4
        assert 0 < e["min_ms"] <= e["p50_ms"] <= e["p90_ms"] <= e["p99_ms"] <= e["max_ms"]
        assert set(r["stages_ms"]) == {"decode", "preprocess", "inference", "postprocess"}
        assert len(r["samples_ms"]["end_to_end"]) == 4
        assert r["speedup_vs_baseline"] is not None and r["speedup_vs_baseline"] > 0
        assert r["throughput_fps"] == pytest.approx(r["batch"] * 1000 / e["mean_ms"])
        assert r["latency_only"] is True
    assert rows[0]["speedup_vs_baseline"] == 1.0
    # Default precision "auto": rows say what ran (ONNX Runtime: FP32), never "auto".
    assert [(r["precision"], r["requested_precision"]) for r in rows[1:]] == [("fp32", "auto")] * 2
    # The runtime's own pipeline at the largest batch, next to the sequential loop at that batch.
    [pipe] = data["pipeline"]
    assert (pipe["backend"], pipe["precision"], pipe["batch"]) == ("onnxruntime", "fp32", 2)
    assert pipe["frames"] == pipe["frames_asked"] == 2 * 4 and pipe["stopped_by"] == "max_frames"
    assert pipe["drops"] == 0 and pipe["fps"] > 0 and pipe["backend_detail"].startswith("segmenter=onnxruntime")
    assert pipe["sequential_fps"] == pytest.approx(rows[2]["throughput_fps"])
    assert pipe["fps_ratio_vs_sequential"] == pytest.approx(pipe["fps"] / pipe["sequential_fps"])
    for stage in ("decode", "preprocess", "inference", "postprocess", "total"):
        assert pipe["latency_ms"][stage]["p50"] <= pipe["latency_ms"][stage]["p99"]
    assert "runtime pipeline" in result.output and "pipe/seq" in result.output
    assert data["machine"]["cpu"]["cores"] >= 1
    assert data["command"].startswith("edge-bus benchmark")
    md = (out / "benchmark.md").read_text()
    assert "x eager" in md and "latency only" in md and "| unet | onnxruntime | fp32 | 2 |" in md
    assert "x eager" in result.output and "p99" in result.output


def test_accuracy_on_a_labelled_folder(tiny_bundles, synthetic_busi, tmp_path):
    """A bundle not marked latency-only gets IoU/Dice on the test split (edge_bus.metrics)."""
    bundles = tmp_path / "bundles"
    shutil.copytree(tiny_bundles / "unet", bundles / "unet")
    manifest = json.loads((bundles / "unet" / "manifest.json").read_text())
    manifest["latency_only"] = False
    (bundles / "unet" / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    result = _run(["--bundles", str(bundles), "--model", "unet", "--batch", "2", "--no-baseline", "--no-plots",
                   "--data", str(synthetic_busi), "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    row = json.loads((out / "benchmark.json").read_text())["results"][0]
    assert row["speedup_vs_baseline"] is None  # no baseline asked
    acc = row["accuracy"]
    assert acc["n"] >= 1 and 0.0 <= acc["iou"] <= 1.0 and 0.0 <= acc["dice"] <= 1.0
    assert acc["iou"] <= acc["dice"] + 1e-9  # IoU never exceeds Dice
    assert not (out / "latency_hist.png").exists()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--model", "resnet9000"], ["unknown model", "vgg19", "unet_vgg19", "deeplabv3_resnet101"]),
        (["--backend", "openvino"], ["unknown backend", "onnxruntime", "torchscript", "tensorrt"]),
        (["--precision", "fp8"], ["unknown precision", "fp32", "fp16", "int8"]),
        (["--precision", "fp16"], ["not available with --backend onnxruntime", "fp32"]),
        (["--batch", "16"], ["outside the batch range [1, 8]", "from 1 to 8"]),
        (["--batch", "two"], ["not an integer"]),
        (["--device", "tpu"], ["not a device", "cuda:N"]),
        (["--device", "cuda:x"], ["not a device", "cuda:N"]),
        (["--max-eval-images", "0"], ["--max-eval-images must be >= 1"]),
        (["--threads", "0"], ["--threads must be >= 1"]),
    ],
)
def test_bad_options_are_rejected_before_any_export(args, words, tmp_path):
    cache = tmp_path / "cache"
    result = _run([*args, "--out", str(tmp_path / "out"), "--no-progress"],
                  env={"EDGE_BUS_CACHE": str(cache), "EDGE_BUS_BUNDLES": str(tmp_path / "none")})
    assert result.exit_code == 2, result.output
    for word in words:
        assert word in result.output, (word, result.output)
    assert not cache.exists()  # nothing exported
    assert not (tmp_path / "out").exists()


def test_what_some_bundle_or_backend_cannot_run_is_skipped_with_the_reason(tiny_bundles, tmp_path):
    """The tiny bundle has no INT8 model and TorchScript never runs INT8: FP32 is measured, the rest is
    listed as skipped with why; a precision that no requested backend runs is still refused."""
    out = tmp_path / "out"
    result = _run(["--bundles", str(tiny_bundles), "--model", "unet", "--batch", "1", "--precision", "fp32,int8",
                   "--backend", "onnxruntime,torchscript", "--no-baseline", "--no-pipeline", "--no-plots",
                   "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "benchmark.json").read_text())
    assert [(r["backend"], r["precision"]) for r in data["results"]] == [("onnxruntime", "fp32")]
    skipped = {(k["backend"], k["precision"]): k["reason"] for k in data["skipped"]}
    assert set(skipped) == {("onnxruntime", "int8"), ("torchscript", "fp32"), ("torchscript", "int8")}
    assert "onnx_int8" in skipped[("onnxruntime", "int8")]
    assert "int8" in skipped[("torchscript", "int8")]
    refused = _run(["--bundles", str(tiny_bundles), "--model", "unet", "--backend", "torchscript", "--precision", "int8",
                    "--out", str(tmp_path / "refused"), "--no-progress"])
    assert refused.exit_code == 2 and "not available with --backend torchscript" in refused.output


def test_auto_and_fp32_are_measured_once(tiny_bundles, tmp_path):
    out = tmp_path / "out"
    result = _run(["--bundles", str(tiny_bundles), "--model", "unet", "--batch", "1", "--precision", "auto,fp32",
                   "--no-baseline", "--no-pipeline", "--no-plots", "--out", str(out), *SMALL])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "benchmark.json").read_text())
    assert [(r["precision"], r["requested_precision"]) for r in data["results"]] == [("fp32", "auto")]
    assert data["pipeline"] == []
    assert any("--precision fp32 runs fp32, already measured" in n for n in data["notes"]), data["notes"]


def test_rejected_bundle_is_refused_before_any_work(tiny_bundles, tmp_path):
    bundles = tmp_path / "bundles"
    shutil.copytree(tiny_bundles / "unet", bundles / "unet")
    manifest = json.loads((bundles / "unet" / "manifest.json").read_text())
    manifest["status"] = "rejected"
    (bundles / "unet" / "manifest.json").write_text(json.dumps(manifest))
    result = _run(["--bundles", str(bundles), "--out", str(tmp_path / "o"), *SMALL])  # no --model: the folder's bundles
    assert result.exit_code == 2
    assert "parity gate" in result.output and "--allow-rejected" in result.output
    assert not (tmp_path / "o").exists()


def test_classification_accuracy_follows_the_bundles_class_order():
    """Test labels index the data's CLASSES; a classifier listing them in another order is scored in its own."""
    from edge_bus import metrics
    from edge_bus.benchmarking.accuracy import TestSet, score

    labels = np.array([0, 1, 2, 2, 0, 1], np.int64)  # benign, malignant, normal, ...
    test = TestSet(np.zeros((6, 4, 4), np.uint8), np.zeros((6, 4, 4), np.uint8), labels, [str(i) for i in range(6)], "h", "t")
    order = ["normal", "benign", "malignant"]
    logits = np.full((6, 3), -5.0, np.float32)
    predicted = ["benign", "malignant", "normal", "benign", "benign", "malignant"]
    for i, name in enumerate(predicted):
        logits[i, order.index(name)] = 5.0
    scored = score("classification", logits, test, order, 0.5)
    got = scored.figures
    y_true = [order.index(["benign", "malignant", "normal"][k]) for k in labels]
    want = metrics.classification_report(y_true, [order.index(n) for n in predicted], order)
    assert got["accuracy"] == pytest.approx(5 / 6) == pytest.approx(want["accuracy"])
    assert got["weighted_f1"] == pytest.approx(want["weighted_f1"])
    assert [order[i] for i in scored.per_image] == predicted and scored.truth.tolist() == y_true
    with pytest.raises(Exception, match="not the data's classes"):
        score("classification", logits, test, ["a", "b", "c"], 0.5)


def test_artifact_against_the_fp32_reference_is_paired_by_image():
    """A loss on most images is shown below zero; the same predictions give exactly 0; a loss on one
    image of forty, the way an INT8 model may differ, has an interval that holds 0."""
    from edge_bus.benchmarking.accuracy import Scored, versus_reference

    rng = np.random.default_rng(0)
    reference = Scored({}, rng.uniform(0.3, 0.9, 40))
    worse = Scored({}, reference.per_image - rng.uniform(0.0, 0.04, 40))
    v = versus_reference(worse, reference, 3)
    assert v["figure"] == "iou" and v["difference"] == pytest.approx((worse.per_image - reference.per_image).mean())
    assert v["interval"][1] < 0 and v["a_ahead"] < 0.05
    same = versus_reference(Scored({}, reference.per_image.copy()), reference, 3)
    assert same["difference"] == 0 and same["interval"] == [0, 0] and same["a_ahead"] == 0.5
    one_off = reference.per_image.copy()
    one_off[7] -= 0.2
    low, high = versus_reference(Scored({}, one_off), reference, 3)["interval"]
    assert low < 0 <= high

    truth = rng.integers(0, 3, 40)
    ref_pred = truth.copy()
    ref_pred[:4] = (truth[:4] + 1) % 3
    flipped = ref_pred.copy()
    flipped[10:20] = (truth[10:20] + 1) % 3  # ten more mistakes
    v = versus_reference(Scored({}, flipped, truth), Scored({}, ref_pred, truth), 3)
    assert v["figure"] == "weighted_f1" and v["difference"] < 0 and v["interval"][1] < 0
    with pytest.raises(ValueError, match="39 reference images"):
        versus_reference(worse, Scored({}, reference.per_image[:39]), 3)


def test_unknown_model_with_a_bundles_folder_lists_its_bundles_before_any_export(tiny_bundles, tmp_path):
    cache = tmp_path / "cache"
    result = _run(["--bundles", str(tiny_bundles), "--model", "unet,resnet9000", "--out", str(tmp_path / "o"), *SMALL],
                  env={"EDGE_BUS_CACHE": str(cache)})
    assert result.exit_code == 2, result.output
    assert "unknown model 'resnet9000'" in result.output and "unet" in result.output and "vgg19" in result.output
    assert not cache.exists() and not (tmp_path / "o").exists()


def test_out_that_is_a_file_is_rejected_before_any_work(tiny_bundles, tmp_path):
    out = tmp_path / "results.txt"
    out.write_text("keep me")
    result = _run(["--bundles", str(tiny_bundles), "--model", "unet", "--out", str(out), *SMALL])
    assert result.exit_code == 2 and "is a file" in result.output, result.output
    assert out.read_text() == "keep me"


def test_batch_outside_a_bundles_range_is_rejected(tiny_bundles, tmp_path):
    result = _run(["--bundles", str(tiny_bundles), "--model", "unet", "--batch", "1,8", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "[1, 4]" in result.output and "8" in result.output
    assert not (tmp_path / "o").exists()


def test_data_folder_without_labels_is_rejected(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"not really")
    result = _run(["--data", str(images), "--out", str(tmp_path / "o")], env={"EDGE_BUS_CACHE": str(tmp_path / "cache")})
    assert result.exit_code == 2
    assert "no labels" in result.output and "benign" in result.output and "malignant" in result.output
    assert not (tmp_path / "cache").exists()


def test_benchmark_modules_import_without_torch():
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("blocked")
        sys.meta_path.insert(0, Block())
        import edge_bus.cli.benchmark
        import edge_bus.benchmarking, edge_bus.benchmarking.report, edge_bus.benchmarking.runner
        import edge_bus.benchmarking.defaults, edge_bus.benchmarking.pipeline, edge_bus.benchmarking.accuracy
        assert "torch" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
