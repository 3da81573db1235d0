"""`edge-bus export CHECKPOINT` and `edge-bus export build-engine BUNDLE` end to end, and bad input."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edge_bus.cli import app
from edge_bus.data.preprocess import PreprocessSpec
from edge_bus.models import create
from edge_bus.training.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create("unet", width=4, depth=2).eval()
    path = tmp_path_factory.mktemp("ckpt") / "unet.pt"
    save_checkpoint(path, model, model="unet", model_kwargs={"width": 4, "depth": 2}, task="segmentation",
                    classes=["lesion"], preprocessing=PreprocessSpec(size=64), split_hash="s" * 8,
                    dataset_sha256="d" * 8, metrics={"val": {"iou": 0.1}})
    return path


def test_export_checkpoint_end_to_end(checkpoint, tmp_path):
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["export", str(checkpoint), "--formats", "onnx,torchscript,tensorrt",
                                 "--precision", "fp16", "--batch", "1:8", "--out", str(out), "--parity-images", "6"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "accepted" and manifest["model"] == "unet"
    assert manifest["provenance"]["split_hash"] == "s" * 8 and len(manifest["provenance"]["checkpoint_sha256"]) == 64
    assert manifest["metrics"] == {"val": {"iou": 0.1}}
    assert manifest["batch_range"] == [1, 8] and manifest["input"]["shape"] == ["batch", 1, 64, 64]
    assert (out / "model.onnx").is_file() and (out / "model.ts").is_file() and (out / "parity.json").is_file()
    assert "build-engine" in result.output


def test_recipe_is_read_and_must_match_the_model(checkpoint, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: unet\ninput_size: 64\nbatch: [1, 2]\nformats: [onnx]\nparity: {images: 3}\n")
    result = runner.invoke(app, ["export", "--recipe", str(recipe), str(checkpoint), "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["batch_range"] == [1, 2] and m["export"]["parity_count"] == 3 and m["artifacts"] == {"onnx": "model.onnx"}
    wrong = runner.invoke(app, ["export", "--recipe", str(REPO / "export" / "vgg19.yaml"), str(checkpoint),
                                "--out", str(tmp_path / "c")])
    assert wrong.exit_code == 2 and "vgg19" in wrong.output and "unet" in wrong.output


def test_corrupt_checkpoint_is_one_line_error(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x00garbage")
    result = runner.invoke(app, ["export", str(bad), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "broken.pt" in result.output and "Traceback" not in result.output


def test_build_engine_without_tensorrt_says_what_to_do(checkpoint, tmp_path):
    pytest.importorskip("numpy")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt present")
    except ImportError:
        pass
    out = tmp_path / "b"
    assert runner.invoke(app, ["export", str(checkpoint), "--formats", "onnx", "--out", str(out),
                               "--parity-images", "3"]).exit_code == 0
    result = runner.invoke(app, ["export", "build-engine", str(out), "--precision", "fp16"])
    assert result.exit_code == 2 and "TensorRT is not installed" in result.output


def test_build_engine_on_a_folder_that_is_no_bundle(tmp_path):
    result = runner.invoke(app, ["export", "build-engine", str(tmp_path)])
    assert result.exit_code == 2 and "manifest" in result.output


@pytest.mark.parametrize("name", ["vgg19.yaml", "unet_vgg19.yaml", "deeplabv3_resnet101.yaml"])
def test_shipped_recipes_load(name):
    from edge_bus.exporting.bundle_export import parse_formats, parse_precisions
    from edge_bus.exporting.recipe import load_recipe

    r = load_recipe(REPO / "export" / name)
    assert r.model == name.removesuffix(".yaml") and r.input_size == 256 and r.batch[0] == 1
    parse_formats(r.formats)
    parse_precisions(r.precisions)


def test_recipe_unknown_key_is_named(tmp_path):
    from edge_bus.errors import ConfigError
    from edge_bus.exporting.recipe import load_recipe

    p = tmp_path / "r.yaml"
    p.write_text("model: vgg19\nbatchsize: 4\n")
    with pytest.raises(ConfigError, match="batchsize"):
        load_recipe(p)
