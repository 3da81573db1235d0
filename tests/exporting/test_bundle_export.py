"""export_bundle end to end on tiny models: manifest, parity gate (passes faithful, fails perturbed)."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge_bus.bundle import open_bundle, read_manifest
from edge_bus.errors import BundleError
from edge_bus.exporting import export_bundle, fresh_bundle, verify_bundle
from export_models import DarkSegmenter, TinyClassifier, source


@pytest.fixture(scope="module")
def seg_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg") / "bundle"
    result = export_bundle(source(DarkSegmenter(), "segmentation"), root,
                           formats="onnx,torchscript,tensorrt", batch_range="1:4",
                           parity_images=12, calibration_images=12)
    return result


def test_faithful_export_is_accepted_with_a_valid_manifest(seg_bundle):
    root = seg_bundle.root
    bundle = open_bundle(root)
    m = bundle.manifest
    assert m.status == "accepted" and seg_bundle.passed
    assert set(m.artifacts) == {"onnx", "torchscript"}
    for kind in m.artifacts:
        assert bundle.artifact_path(kind).is_file()
    assert (root / "engines").is_dir()
    assert m.input.shape == ["batch", 1, 64, 64] and m.output.name == "logits"
    assert m.export["onnx_sha256"] and m.export["batch_range"] == [1, 4]
    assert "onnxruntime" in m.provenance["export_versions"]
    parity = json.loads((root / "parity.json").read_text())
    kinds = {r["artifact"]: r for r in parity["artifacts"]}
    assert kinds["onnx"]["mean_iou_vs_reference"] > 0.999
    assert kinds["onnx"]["iou_vs_ground_truth_reference"] > 0.1  # the gate saw real lesions, not empty masks


def test_int8_onnx_has_its_own_gate(seg_bundle, tmp_path):
    result = export_bundle(source(DarkSegmenter(), "segmentation"), tmp_path / "int8", formats="onnx,onnx_int8",
                           parity_images=12, calibration_images=12)
    m = open_bundle(result.root).manifest
    assert m.artifacts["onnx_int8"] == "model.int8.onnx"
    # TensorRT's encoding of the same calibration travels along; ONNX Runtime's view of it is
    # recorded but does not decide the status (its engine is gated when built on the GPU).
    assert m.artifacts["onnx_int8_tensorrt"] == "model.int8.tensorrt.onnx"
    trt_rec = {r["artifact"]: r for r in result.parity["artifacts"]}["onnx_int8_tensorrt"]
    assert trt_rec["informative_only"] and trt_rec["precision"] == "int8"
    assert m.export["calibration"]["source"].startswith("phantoms")
    rec = {r["artifact"]: r for r in result.parity["artifacts"]}["onnx_int8"]
    assert rec["precision"] == "int8" and rec["thresholds"]["max_abs_iou_change"] == 0.01
    # The deterministic DarkSegmenter quantizes faithfully: its INT8 artifact passes the gate.
    assert rec["passed"] and rec["mean_iou_vs_reference"] >= 0.98 and m.status == "accepted"
    # INT8 calibrated on the wrong range (inputs shrunk 100x: activations clip) must fail it.
    from edge_bus.data.preprocess import normalize
    from edge_bus.exporting import parity as P
    from edge_bus.exporting.quantize import quantize_int8
    from edge_bus.exporting.to_onnx import ort_session, run_onnx

    ref = P.load_reference(result.root / P.REFERENCE_NAME)
    inputs = normalize(ref.images, m.preprocessing)
    bad = quantize_int8(result.root / "model.onnx", tmp_path / "bad.int8.onnx", inputs * 0.01)
    bad_rec = P.compare(ref, run_onnx(ort_session(bad), inputs), artifact="onnx_int8", precision="int8")
    assert not bad_rec["passed"] and bad_rec["mean_iou_vs_reference"] < 0.98


def test_missing_tensorrt_still_writes_bundle_and_says_how_to_build(seg_bundle):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt present")
    except ImportError:
        pass
    text = " ".join(seg_bundle.messages)
    assert f"edge-bus export build-engine {seg_bundle.root}" in text
    assert "skipped" in seg_bundle.manifest.export["tensorrt"]


def test_perturbed_onnx_fails_the_gate_and_marks_bundle_rejected(seg_bundle, tmp_path):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(seg_bundle.root, root)
    model = onnx.load(str(root / "model.onnx"))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size > 1:
            init.CopyFrom(numpy_helper.from_array(arr + rng.normal(0, 0.3, arr.shape).astype(np.float32), init.name))
    onnx.save(model, str(root / "model.onnx"))
    report = verify_bundle(root)
    onnx_rec = next(r for r in report["artifacts"] if r["artifact"] == "onnx")
    assert not onnx_rec["passed"] and not report["passed"]
    assert read_manifest(root / "manifest.json").status == "rejected"
    with pytest.raises(BundleError, match="parity gate"):
        open_bundle(root).require_accepted()
    open_bundle(root).require_accepted(allow_rejected=True)


def test_classifier_gate_passes_faithful_and_fails_against_noisy_model(tmp_path):
    import torch

    src = source(TinyClassifier(), "classification")
    ok = export_bundle(src, tmp_path / "ok", formats="onnx", parity_images=9)
    rec = ok.parity["artifacts"][0]
    assert ok.passed and rec["top1_agreement"] == 1.0 and rec["max_prob_diff"] < 1e-4
    # The same export judged against a reference model with noise added must fail.
    noisy = TinyClassifier().eval()
    noisy.load_state_dict(src.model.state_dict())
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(torch.randn_like(p) * 2.0)
    from edge_bus.exporting import parity as P
    from edge_bus.exporting.to_torchscript import run_torch

    ref = P.load_reference(tmp_path / "ok" / "parity_reference.npz")
    from edge_bus.data.preprocess import normalize

    bad = P.compare(ref, run_torch(noisy, normalize(ref.images, src.spec)), artifact="onnx")
    assert not bad["passed"] and bad["top1_agreement"] < 0.99


def test_fresh_bundle_is_unchecked_latency_only(tmp_path):
    result = fresh_bundle("unet", tmp_path / "fresh", size=64, model_kwargs={"width": 4, "depth": 2})
    m = open_bundle(tmp_path / "fresh").manifest
    assert m.status == "unchecked" and m.latency_only and m.model == "unet"
    assert result.parity["artifacts"][0]["max_abs_diff"] < 1e-3


@pytest.mark.parametrize(
    "edit,words",
    [
        (lambda d: d.pop("task"), "missing the field 'task'"),
        (lambda d: d.update(threshold="high"), "'threshold' must be"),
        (lambda d: d.update(artifacts={"onnx": "model.onnx", "tflite": "x"}), "unknown artifact kinds"),
        (lambda d: d.update(artifacts={"onnx": 5}), "'artifacts.onnx' must be a file name"),
        (lambda d: d.update(artifacts={"onnx": "../elsewhere/model.onnx"}), "'artifacts.onnx' must be a path inside"),
        (lambda d: d.update(metrics=["a"]), "'metrics' must be an object, got a list"),
        (lambda d: d.update(metrics=None), "'metrics' must be an object, got null"),
        (lambda d: d.update(engines=None), "'engines' must be a list, got null"),
        (lambda d: d.update(engines=[5]), "'engines[0]' must be an engine record"),
        (lambda d: d.update(provenance="x"), "'provenance' must be an object"),
        (lambda d: d.update(latency_only="no"), "'latency_only' must be true or false, got a string"),
        (lambda d: d.update(threshold=True), "'threshold' must be"),
        (lambda d: d["preprocessing"].update(size="big"), "'preprocessing.size' must be an integer"),
        (lambda d: d["input"].update(shape=["batch", 1, 32, 32]), "'input.shape' is ['batch', 1, 32, 32] but preprocessing.size is 64"),
        (lambda d: d["input"].update(shape=["batch", 3, 64, 64]), "'input.shape' must be [batch, 1, size, size]"),
        (lambda d: d["output"].update(shape=["batch", 2, 64, 64]), "'output.shape' has 2 channels but 'classes' names 1"),
        (lambda d: d["output"].update(shape=["batch", 1]), "'output.shape' must be [batch, 1, size, size]"),
        (lambda d: d["output"].update(shape=["batch", 1, 0, 64]), "'output.shape' must list positive integers"),
    ],
)
def test_manifest_missing_or_wrong_field_names_file_and_field(seg_bundle, tmp_path, edit, words):
    data = json.loads((seg_bundle.root / "manifest.json").read_text())
    edit(data)
    bad = tmp_path / "manifest.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(BundleError) as info:
        read_manifest(bad)
    assert str(bad) in str(info.value) and words in str(info.value) and "\n" not in str(info.value)


def test_classifier_classes_must_match_its_output(tmp_path):
    result = export_bundle(source(TinyClassifier(), "classification"), tmp_path / "cls", formats="onnx", parity_images=3)
    data = json.loads((result.root / "manifest.json").read_text())
    data["classes"] = ["benign", "malignant"]
    (result.root / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="'output.shape' has 3 channels but 'classes' names 2"):
        open_bundle(result.root)


def test_unchecked_bundle_is_refused_unless_allowed(tmp_path):
    fresh_bundle("unet", tmp_path / "fresh", size=64, model_kwargs={"width": 4, "depth": 2})
    bundle = open_bundle(tmp_path / "fresh")
    with pytest.raises(BundleError) as info:
        bundle.require_accepted()
    msg = str(info.value)
    assert "unchecked" in msg and "edge-bus export CHECKPOINT" in msg and "--allow-unchecked" in msg
    bundle.require_accepted(allow_unchecked=True)
    with pytest.raises(BundleError, match="unchecked"):
        bundle.require_accepted(allow_rejected=True)  # allowing rejected bundles does not allow unchecked ones


def test_parity_outcome_that_is_not_json_names_the_file(tmp_path):
    from edge_bus.exporting import parity as P

    path = tmp_path / "parity.json"
    for text, words in (("{oops", "not valid JSON"), ('{"passed": "yes", "artifacts": []}', "needs 'passed'"),
                        ('{"passed": true, "artifacts": [1]}', "must list objects")):
        path.write_text(text)
        with pytest.raises(BundleError, match=words) as info:
            P.read_parity(path)
        assert str(path) in str(info.value)
    with pytest.raises(BundleError, match="parity outcome not found"):
        P.read_parity(tmp_path / "absent.json")


def test_tensorrt_int8_alone_adds_only_its_qdq_input_which_does_not_gate(tmp_path, monkeypatch):
    from edge_bus.exporting import quantize

    real = quantize.quantize_int8

    def ort_int8_broken(onnx_path, out_path, calibration, *, for_tensorrt=False, **kw):
        """ONNX Runtime's encoding calibrated on a wrong range (it fails the gate); TensorRT's is fine."""
        return real(onnx_path, out_path, calibration if for_tensorrt else calibration * 0.01, for_tensorrt=for_tensorrt, **kw)

    monkeypatch.setattr(quantize, "quantize_int8", ort_int8_broken)
    src = source(DarkSegmenter(), "segmentation")
    implicit = export_bundle(src, tmp_path / "implicit", formats="onnx,tensorrt", precisions="fp16,int8",
                             parity_images=12, calibration_images=12)
    m = implicit.manifest
    assert "onnx_int8" not in m.artifacts and m.artifacts["onnx_int8_tensorrt"] == "model.int8.tensorrt.onnx"
    assert m.status == "accepted" and implicit.passed and not (tmp_path / "implicit" / "model.int8.onnx").exists()
    assert all(r.get("informative_only") for r in implicit.parity["artifacts"] if r["artifact"].startswith("onnx_int8"))
    assert any("ONNX Runtime INT8 model is not part of this bundle" in line for line in implicit.messages)
    # Asked for explicitly, ONNX Runtime's INT8 model is gated and its failure rejects the bundle.
    explicit = export_bundle(src, tmp_path / "explicit", formats="onnx,onnx_int8,tensorrt", precisions="int8",
                             parity_images=12, calibration_images=12)
    assert explicit.manifest.status == "rejected" and not explicit.passed


def test_image_counts_must_be_positive(tmp_path):
    from edge_bus.errors import ConfigError

    for kwargs, option in (({"parity_images": 0}, "--parity-images"), ({"calibration_images": -3}, "--calibration-images")):
        with pytest.raises(ConfigError, match=f"{option}: must be a whole number >= 1"):
            export_bundle(source(DarkSegmenter(), "segmentation"), tmp_path / "x", formats="onnx", **kwargs)
    assert not (tmp_path / "x").exists()


def test_informative_records_do_not_decide_the_gate():
    from edge_bus.exporting import parity as P

    gated_ok = {"artifact": "onnx", "passed": True}
    informative_fail = {"artifact": "onnx_int8_tensorrt", "passed": False, "informative_only": True}
    assert P.summarize([gated_ok, informative_fail], latency_only=False, source="val")["passed"]
    assert not P.summarize([gated_ok, {**informative_fail, "informative_only": False}], latency_only=False,
                           source="val")["passed"]
