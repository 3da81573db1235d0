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


def _save_unet(path, *, split_hash, pack=None):
    torch.manual_seed(0)
    model = create("unet", width=4, depth=2).eval()
    save_checkpoint(path, model, model="unet", model_kwargs={"width": 4, "depth": 2}, task="segmentation",
                    classes=["benign", "malignant", "normal"], preprocessing=PreprocessSpec(size=64),
                    split_hash=split_hash, dataset_sha256="d" * 8, metrics={"val": {"iou": 0.1}},
                    train={"epochs": 1, "pack": str(pack) if pack else None})
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, export_pack):
    """A U-Net checkpoint that records the pack it was trained from (and that pack's split)."""
    from edge_bus.data.pack import load_pack

    return _save_unet(tmp_path_factory.mktemp("ckpt") / "unet.pt", split_hash=load_pack(export_pack).split_hash,
                      pack=export_pack)


def test_export_checkpoint_end_to_end(checkpoint, tmp_path):
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["export", str(checkpoint), "--formats", "onnx,torchscript,tensorrt",
                                 "--precision", "fp16", "--batch", "1:8", "--out", str(out), "--parity-images", "6"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "accepted" and manifest["model"] == "unet"
    assert len(manifest["provenance"]["checkpoint_sha256"]) == 64
    # Gated on the training pack the checkpoint recorded (no --pack given), never on phantoms.
    assert manifest["export"]["parity_images"].startswith("pack:") and "phantoms" not in result.output
    # A segmentation manifest's classes are its output channel; the data classes are provenance.
    assert manifest["classes"] == ["lesion"]
    assert manifest["provenance"]["data_classes"] == ["benign", "malignant", "normal"]
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


def test_trained_checkpoint_without_data_is_refused_not_gated_on_phantoms(tmp_path, export_pack):
    bare = _save_unet(tmp_path / "bare.pt", split_hash="s" * 8)
    result = runner.invoke(app, ["export", str(bare), "--formats", "onnx", "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "bare.pt" in result.output and "--pack" in result.output
    assert not (tmp_path / "b").exists()
    # A recorded pack that now holds another split is refused too (it could hold training images).
    moved = _save_unet(tmp_path / "moved.pt", split_hash="s" * 8, pack=export_pack)
    result = runner.invoke(app, ["export", str(moved), "--formats", "onnx", "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "now holds split" in result.output and "--pack" in result.output
    # An explicit --pack is used.
    ok = runner.invoke(app, ["export", str(bare), "--formats", "onnx", "--out", str(tmp_path / "d"),
                             "--pack", str(export_pack), "--parity-images", "3"])
    assert ok.exit_code == 0, ok.output
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["export"]["parity_images"].startswith("pack:")


def test_failed_export_neither_blocks_a_retry_nor_destroys_the_old_bundle(checkpoint, tmp_path):
    out = tmp_path / "b"
    bad_pack = tmp_path / "bad.npz"
    bad_pack.write_bytes(b"not a pack")
    failed = runner.invoke(app, ["export", str(checkpoint), "--formats", "onnx", "--out", str(out),
                                 "--pack", str(bad_pack)])
    assert failed.exit_code == 2 and "bad.npz" in failed.output
    good = runner.invoke(app, ["export", str(checkpoint), "--formats", "onnx", "--out", str(out), "--parity-images", "3"])
    assert good.exit_code == 0, good.output
    before = (out / "manifest.json").read_text()
    again = runner.invoke(app, ["export", str(checkpoint), "--formats", "onnx,onnx_int8", "--out", str(out),
                                "--pack", str(bad_pack)])
    assert again.exit_code == 2
    assert (out / "manifest.json").read_text() == before and (out / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "bad.npz"]  # no temp folders left behind


def test_ensemble_is_exported_as_a_segmenter_and_classical_is_refused(checkpoint, tmp_path, export_pack):
    from edge_bus.errors import CheckpointError
    from edge_bus.models.ensemble import EnsembleModel, save_ensemble
    from edge_bus.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    ens = tmp_path / "ens" / "ensemble.json"
    save_ensemble(ens, EnsembleModel(path=None, members=[checkpoint, checkpoint], weights=[0.5, 0.5], mode="mean",
                                     preprocessing=ckpt.preprocessing, classes=ckpt.classes, split_hash=ckpt.split_hash))
    out = tmp_path / "ens-bundle"
    result = runner.invoke(app, ["export", str(ens), "--formats", "onnx,torchscript", "--out", str(out),
                                 "--parity-images", "3"])
    assert result.exit_code == 0, result.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["model"] == "ensemble" and m["task"] == "segmentation" and m["classes"] == ["lesion"]
    parity = json.loads((out / "parity.json").read_text())
    assert {r["artifact"]: r["passed"] for r in parity["artifacts"]} == {"onnx": True, "torchscript": True}
    assert m["status"] == "accepted" and m["export"]["parity_images"].startswith("pack:")  # the members' pack
    classical = tmp_path / "classical.json"
    classical.write_text(json.dumps({"format": "edge-bus-classical", "version": 1}))
    result = runner.invoke(app, ["export", str(classical), "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and "not a network" in result.output and "Unpickling" not in result.output
    with pytest.raises(CheckpointError, match="ensemble.json: not a torch checkpoint"):
        load_checkpoint(ens)


def test_build_engine_without_tensorrt_says_what_to_do(checkpoint, tmp_path):
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


@pytest.mark.parametrize("option,value", [("--parity-images", "0"), ("--parity-images", "-5"),
                                          ("--calibration-images", "0")])
def test_image_counts_below_one_are_refused(checkpoint, tmp_path, option, value):
    result = runner.invoke(app, ["export", str(checkpoint), "--formats", "onnx", "--out", str(tmp_path / "b"),
                                 option, value])
    assert result.exit_code == 2 and option in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "b").exists()


def test_failed_gate_at_export_exits_1_and_leaves_the_bundle_rejected(checkpoint, tmp_path, monkeypatch):
    """A deliberately perturbed model.onnx (noise on its weights) must fail the gate against PyTorch."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from edge_bus.bundle import open_bundle
    from edge_bus.errors import BundleError
    from edge_bus.exporting import to_onnx

    real_export = to_onnx.export_onnx

    def perturbed_export(model, path, **kwargs):
        out = real_export(model, path, **kwargs)
        proto = onnx.load(str(out))
        rng = np.random.default_rng(0)
        for init in proto.graph.initializer:
            arr = numpy_helper.to_array(init)
            if arr.dtype == np.float32 and arr.size > 1:
                init.CopyFrom(numpy_helper.from_array(arr + rng.normal(0, 1.0, arr.shape).astype(np.float32), init.name))
        onnx.save(proto, str(out))
        return out

    monkeypatch.setattr(to_onnx, "export_onnx", perturbed_export)
    out = tmp_path / "b"
    result = runner.invoke(app, ["export", str(checkpoint), "--formats", "onnx,torchscript", "--out", str(out),
                                 "--parity-images", "6"])
    assert result.exit_code == 1, result.output
    assert "rejected" in result.output and "Traceback" not in result.output
    bundle = open_bundle(out)
    assert bundle.manifest.status == "rejected"
    parity = json.loads((out / "parity.json").read_text())
    gates = {r["artifact"]: r["passed"] for r in parity["artifacts"]}
    assert gates == {"onnx": False, "torchscript": True} and not parity["passed"]
    with pytest.raises(BundleError, match="failed its parity gate"):
        bundle.require_accepted()


@pytest.fixture(scope="module")
def split_file(synthetic_busi, tmp_path_factory):
    """The split the checkpoints below were trained on, as a manifest file."""
    from edge_bus.data.busi import index_busi
    from edge_bus.data.split import make_split, write_split

    return write_split(make_split(index_busi(synthetic_busi), seed=0), tmp_path_factory.mktemp("split") / "split.json")


def _image_bytes(root, ids, size):
    from edge_bus.data.busi import index_busi, load_sample

    samples = {s.id: s for s in index_busi(root).samples}
    return {load_sample(samples[i], size)[0].tobytes() for i in ids}


def test_data_folder_is_divided_by_the_split_the_checkpoint_was_trained_on(split_file, synthetic_busi, tmp_path,
                                                                           monkeypatch):
    import numpy as np

    from edge_bus.data.busi import index_busi
    from edge_bus.data.split import load_split, make_split, write_split
    from edge_bus.exporting import calibration
    from edge_bus.exporting import parity as P

    split = load_split(split_file)
    ckpt = _save_unet(tmp_path / "unet.pt", split_hash=split.hash)
    base = ["export", str(ckpt), "--formats", "onnx,onnx_int8", "--data", str(synthetic_busi),
            "--parity-images", "500", "--calibration-images", "500"]
    monkeypatch.setattr(calibration, "COMMITTED_SPLIT", tmp_path / "no-committed-split.json")
    refused = runner.invoke(app, [*base, "--out", str(tmp_path / "a")])
    assert refused.exit_code == 2 and "--split MANIFEST" in refused.output and split.hash[:12] in refused.output
    other = write_split(make_split(index_busi(synthetic_busi), seed=1), tmp_path / "other.json")
    wrong = runner.invoke(app, [*base, "--split", str(other), "--out", str(tmp_path / "b")])
    assert wrong.exit_code == 2 and "other.json" in wrong.output and "was trained on split" in wrong.output

    out = tmp_path / "c"
    ok = runner.invoke(app, [*base, "--split", str(split_file), "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    ref = P.load_reference(out / "parity_reference.npz")
    assert len(ref) == len(split.ids("val"))
    assert {img.tobytes() for img in ref.images} == _image_bytes(synthetic_busi, split.ids("val"), 64)
    with np.load(out / "calibration.npz") as z:
        calib = {img.tobytes() for img in z["images"]}
    assert calib == _image_bytes(synthetic_busi, split.ids("train"), 64)

    # The committed split serves when its hash is the checkpoint's.
    monkeypatch.setattr(calibration, "COMMITTED_SPLIT", split_file)
    committed = runner.invoke(app, [*base, "--out", str(tmp_path / "d")])
    assert committed.exit_code == 0, committed.output
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert f"val of split {split.hash[:12]}" in manifest["export"]["parity_images"]


def test_split_without_data_is_refused(checkpoint, split_file, tmp_path):
    result = runner.invoke(app, ["export", str(checkpoint), "--formats", "onnx", "--split", str(split_file),
                                 "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "--split" in result.output and "--data" in result.output


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


def test_unet_vgg19_recipe_does_not_gate_the_onnx_runtime_int8_model_it_fails():
    from edge_bus.exporting.bundle_export import int8_models, parse_formats, parse_precisions
    from edge_bus.exporting.recipe import load_recipe

    r = load_recipe(REPO / "export" / "unet_vgg19.yaml")
    assert int8_models(parse_formats(r.formats), parse_precisions(r.precisions)) == ("onnx_int8_tensorrt",)


def test_recipe_image_counts_must_be_positive(tmp_path):
    from edge_bus.errors import ConfigError
    from edge_bus.exporting.recipe import load_recipe

    p = tmp_path / "r.yaml"
    p.write_text("model: vgg19\nparity: {images: 0}\n")
    with pytest.raises(ConfigError, match="'parity.images' must be a whole number >= 1"):
        load_recipe(p)


def test_recipe_unknown_key_is_named(tmp_path):
    from edge_bus.errors import ConfigError
    from edge_bus.exporting.recipe import load_recipe

    p = tmp_path / "r.yaml"
    p.write_text("model: vgg19\nbatchsize: 4\n")
    with pytest.raises(ConfigError, match="batchsize"):
        load_recipe(p)


def test_split_images_are_checked_against_the_split_manifest(split_file, synthetic_busi, tmp_path):
    import re
    import shutil

    from edge_bus.data.split import load_split
    from edge_bus.errors import DataError
    from edge_bus.exporting.calibration import from_split

    split = load_split(split_file)
    data = tmp_path / "busi"
    shutil.copytree(synthetic_busi, data)
    images = from_split(data, split, "val", 100, 64)
    val = split.items("val")
    assert len(images) == len(val) and list(images.labels) == [item.label_index for item in val]
    (data / val[0].image).write_bytes(b"not the image the split was made from")
    with pytest.raises(DataError, match=f"differs from the split manifest.*{re.escape(val[0].image)}"):
        from_split(data, split, "val", 100, 64)
    assert len(from_split(data, split, "train", 100, 64)) == len(split.items("train"))  # only the files it reads
