"""Engines are gated before they are installed: build_engines and export with a fake builder.

The TensorRT builder and the engine run are replaced (no TensorRT here): the fake "engine" returns
ONNX Runtime's logits of the bundle's model.onnx (faithful) or their negation (fails the gate).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_bus import engine_cache as ec
from edge_bus.bundle import open_bundle
from edge_bus.cli import app
from edge_bus.errors import BundleError
from edge_bus.exporting import bundle_export, export_bundle, to_tensorrt
from edge_bus.exporting.bundle_export import build_engines
from edge_bus.fileio import sha256_file
from export_models import DarkSegmenter, source

ORIN = ec.Target("10.3.0", "Orin", "8.7")
runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg") / "bundle"
    export_bundle(source(DarkSegmenter(), "segmentation"), root, formats="onnx", batch_range="1:4", parity_images=8)
    return root


@pytest.fixture
def bundle_dir(exported, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(exported, root)
    return root


class FakeTensorRT:
    """Stands in for to_tensorrt.build_engine and bundle_export._run_engine."""

    def __init__(self, monkeypatch, faithful: dict[str, bool]):
        self.faithful = faithful
        self.built: list[str] = []
        self.crash_on: str | None = None
        monkeypatch.setattr(ec, "current_target", lambda device=0: ORIN)
        monkeypatch.setattr(to_tensorrt, "build_engine", self.build_engine)
        monkeypatch.setattr(bundle_export, "_run_engine", self.run_engine)
        monkeypatch.setattr(bundle_export, "_tensorrt_target_or_reason", lambda: (ORIN, None))

    def build_engine(self, onnx_path, bundle_root, *, model, target, precision, batch_range, size, workspace_gb,
                     calibration=None, calibration_info=None):
        rec = ec.make_record(model, sha256_file(onnx_path), target, precision, batch_range=list(batch_range),
                             input_size=size, source_onnx=Path(onnx_path).name)
        staged = ec.staging_path(bundle_root, rec)
        staged.write_bytes(f"{precision} engine bytes".encode() * 100)
        self.built.append(precision)
        return ec.StagedEngine(rec, staged)

    def run_engine(self, bundle, engine_path, precision, inputs):
        from edge_bus.exporting.to_onnx import ort_session, run_onnx

        # While it is gated, the engine is a staging file that the runtime's lookup cannot find.
        assert engine_path.name.endswith(".staging")
        found = ec.lookup(bundle.root, model=bundle.manifest.model, onnx_sha256=sha256_file(bundle.root / "model.onnx"),
                          target=ORIN, precision=precision)
        assert found.status != "fresh" or found.record.path != str(engine_path.relative_to(bundle.root))
        if precision == self.crash_on:
            raise RuntimeError("power cut")
        logits = run_onnx(ort_session(bundle.root / "model.onnx"), inputs)
        return logits if self.faithful.get(precision, True) else -logits


def _engine_files(root):
    return sorted(p.name for p in (root / "engines").iterdir() if not p.name.startswith("timing-"))


def test_only_engines_that_pass_their_gate_are_installed(bundle_dir, monkeypatch):
    fake = FakeTensorRT(monkeypatch, faithful={"fp16": True, "fp32": False})
    built, messages = build_engines(bundle_dir, precisions="fp16,fp32")
    assert [r["precision"] for r in built] == ["fp16"]
    assert "fp32 engine" in " ".join(messages) and "not installed" in " ".join(messages)
    m = open_bundle(bundle_dir).manifest
    fp16 = m.engines[0]
    assert [e["precision"] for e in m.engines] == ["fp16"] and m.artifacts["tensorrt"] == fp16["path"]
    assert _engine_files(bundle_dir) == sorted([Path(fp16["path"]).name, Path(fp16["path"]).with_suffix(".json").name])
    assert fp16["engine_sha256"] == sha256_file(bundle_dir / fp16["path"])
    parity = json.loads((bundle_dir / "parity.json").read_text())
    gates = {r["precision"]: r for r in parity["artifacts"] if r["artifact"] == "tensorrt"}
    assert gates["fp16"]["passed"] and not gates["fp32"]["passed"] and not parity["passed"]
    assert m.status == "rejected"
    # The CLI says so and exits 1.
    result = runner.invoke(app, ["export", "build-engine", str(bundle_dir), "--precision", "fp32"])
    assert result.exit_code == 1 and "parity gate failed" in result.output
    # A rebuild that passes installs it and the bundle is accepted again.
    fake.faithful["fp32"] = True
    built, messages = build_engines(bundle_dir, precisions="fp16,fp32")
    assert [r["precision"] for r in built] == ["fp32"] and "up to date" in messages[0]
    m = open_bundle(bundle_dir).manifest
    assert m.status == "accepted" and sorted(e["precision"] for e in m.engines) == ["fp16", "fp32"]


def test_status_is_written_after_each_engine(bundle_dir, monkeypatch):
    fake = FakeTensorRT(monkeypatch, faithful={})
    fake.crash_on = "fp32"
    with pytest.raises(RuntimeError, match="power cut"):
        build_engines(bundle_dir, precisions="fp16,fp32")
    m = open_bundle(bundle_dir).manifest
    assert [e["precision"] for e in m.engines] == ["fp16"] and m.status == "accepted"
    parity = json.loads((bundle_dir / "parity.json").read_text())
    assert [r["precision"] for r in parity["artifacts"] if r["artifact"] == "tensorrt"] == ["fp16"]
    assert not any(p.name.endswith(".staging") for p in (bundle_dir / "engines").iterdir())


def test_nothing_is_built_without_the_parity_reference(bundle_dir, monkeypatch):
    fake = FakeTensorRT(monkeypatch, faithful={})
    (bundle_dir / "parity_reference.npz").unlink()
    with pytest.raises(BundleError, match="parity_reference.npz: missing.*builds no engine it cannot gate"):
        build_engines(bundle_dir, precisions="fp16")
    assert fake.built == [] and _engine_files(bundle_dir) == []


@pytest.mark.parametrize("damage,words", [("delete", "parity outcome missing"), ("corrupt", "not valid JSON")])
def test_missing_or_corrupt_parity_json_is_a_one_line_error(bundle_dir, monkeypatch, damage, words):
    fake = FakeTensorRT(monkeypatch, faithful={})
    parity = bundle_dir / "parity.json"
    parity.unlink() if damage == "delete" else parity.write_text("{half a file")
    with pytest.raises(BundleError, match=words):
        build_engines(bundle_dir, precisions="fp16")
    result = runner.invoke(app, ["export", "build-engine", str(bundle_dir)])
    assert result.exit_code == 2 and "parity.json" in result.output and "Traceback" not in result.output
    assert fake.built == []


def test_truncated_engine_is_rebuilt_not_up_to_date(bundle_dir, monkeypatch):
    FakeTensorRT(monkeypatch, faithful={})
    (rec,), _ = build_engines(bundle_dir, precisions="fp16")
    engine = bundle_dir / rec["path"]
    full = engine.read_bytes()
    engine.write_bytes(full[:7])  # a copy cut short; its record still matches ONNX, TensorRT and GPU
    built, messages = build_engines(bundle_dir, precisions="fp16")
    assert built and "rebuilding" in messages[0] and "truncated" in messages[0]
    assert engine.read_bytes() == full


def test_engine_failing_at_export_is_not_installed_and_rejects_the_bundle(tmp_path, monkeypatch):
    fake = FakeTensorRT(monkeypatch, faithful={"fp16": False})
    result = export_bundle(source(DarkSegmenter(), "segmentation"), tmp_path / "bad", formats="onnx,tensorrt",
                           precisions="fp16", batch_range="1:4", parity_images=8)
    assert not result.passed and result.manifest.status == "rejected" and result.manifest.engines == []
    assert _engine_files(tmp_path / "bad") == [] and "tensorrt" not in result.manifest.artifacts
    trt = next(r for r in result.parity["artifacts"] if r["artifact"] == "tensorrt")
    assert not trt["passed"] and trt["mean_iou_vs_reference"] < 0.98
    fake.faithful["fp16"] = True
    good = export_bundle(source(DarkSegmenter(), "segmentation"), tmp_path / "good", formats="onnx,tensorrt",
                         precisions="fp16", batch_range="1:4", parity_images=8)
    m = open_bundle(tmp_path / "good").manifest
    assert good.passed and m.status == "accepted" and [e["precision"] for e in m.engines] == ["fp16"]
    assert np.isclose(next(r for r in good.parity["artifacts"] if r["artifact"] == "tensorrt")["mean_iou_vs_reference"], 1.0)


def test_latency_only_bundle_keeps_its_engines_and_stays_unchecked(tmp_path, monkeypatch):
    from edge_bus.exporting import fresh_bundle

    FakeTensorRT(monkeypatch, faithful={"fp16": False})
    result = fresh_bundle("unet", tmp_path / "fresh", size=64, formats=("onnx", "tensorrt"),
                          model_kwargs={"width": 4, "depth": 2}, batch_range=(1, 2))
    m = result.manifest
    assert m.status == "unchecked" and [e["precision"] for e in m.engines] == ["fp16"]
    trt = next(r for r in result.parity["artifacts"] if r["artifact"] == "tensorrt")
    assert trt["informative_only"] and "max_abs_diff" in trt
