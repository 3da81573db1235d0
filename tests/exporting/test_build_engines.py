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
    """Stands in for to_tensorrt.build_engine and bundle_export._run_engine, on GPU `target`."""

    def __init__(self, monkeypatch, faithful: dict[str, bool], target: ec.Target = ORIN):
        self.faithful = faithful
        self.target = target
        self.built: list[str] = []
        self.crash_on: str | None = None
        self.final: dict[Path, tuple[Path, bytes | None]] = {}  # staging file -> (final file, its bytes then)
        monkeypatch.setattr(ec, "current_target", lambda device=0: self.target)
        monkeypatch.setattr(to_tensorrt, "build_engine", self.build_engine)
        monkeypatch.setattr(bundle_export, "_run_engine", self.run_engine)
        monkeypatch.setattr(bundle_export, "_tensorrt_target_or_reason", lambda: (self.target, None))

    def build_engine(self, onnx_path, bundle_root, *, model, target, precision, batch_range, size, workspace_gb,
                     calibration=None, calibration_info=None):
        assert target == self.target
        rec = ec.make_record(model, sha256_file(onnx_path), target, precision, batch_range=list(batch_range),
                             input_size=size, source_onnx=Path(onnx_path).name)
        staged = ec.staging_path(bundle_root, rec)
        kind = "faithful" if self.faithful.get(precision, True) else "broken!!"
        staged.write_bytes(f"{precision} {kind} engine bytes".encode() * 100)
        final = Path(bundle_root) / rec.path
        self.final[staged] = (final, final.read_bytes() if final.is_file() else None)
        self.built.append(precision)
        return ec.StagedEngine(rec, staged)

    def run_engine(self, bundle, engine_path, precision, inputs):
        from edge_bus.exporting.to_onnx import ort_session, run_onnx

        # While it is gated, the engine is a staging file; its final file is not written yet (absent,
        # or the engine installed there before, unchanged).
        assert engine_path.name.endswith(".staging")
        final, before = self.final[engine_path]
        assert (final.read_bytes() if final.is_file() else None) == before
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


@pytest.mark.parametrize("damage,words", [("delete", "parity outcome not found"), ("corrupt", "not valid JSON")])
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


WORKSTATION = ec.Target("10.3.0", "NVIDIA RTX A4000", "8.6")


def _tensorrt_gates(root):
    return [r for r in json.loads((root / "parity.json").read_text())["artifacts"] if r["artifact"] == "tensorrt"]


def test_engine_that_failed_on_another_gpu_does_not_reject_the_bundle_built_here(tmp_path, monkeypatch):
    """fp16 fails at export on a workstation (not installed, bundle rejected); on the cart it passes: accepted."""
    fake = FakeTensorRT(monkeypatch, faithful={"fp16": False}, target=WORKSTATION)
    root = tmp_path / "bundle"
    result = export_bundle(source(DarkSegmenter(), "segmentation"), root, formats="onnx,tensorrt", precisions="fp16",
                           batch_range="1:4", parity_images=8)
    assert result.manifest.status == "rejected" and result.manifest.engines == []
    (failed,) = _tensorrt_gates(root)
    assert not failed["passed"] and "RTX A4000" in failed["target"]

    fake.target, fake.faithful["fp16"] = ORIN, True  # the cart
    result = runner.invoke(app, ["export", "build-engine", str(root), "--precision", "fp16"])
    assert result.exit_code == 0, result.output
    m = open_bundle(root).manifest
    assert m.status == "accepted" and [e["gpu_name"] for e in m.engines] == ["Orin"]
    assert [(g["engine"], g["passed"]) for g in _tensorrt_gates(root)] == [(m.engines[0]["path"], True)]
    assert json.loads((root / "parity.json").read_text())["passed"]


def test_failed_forced_rebuild_keeps_the_installed_engine(bundle_dir, monkeypatch):
    fake = FakeTensorRT(monkeypatch, faithful={})
    (rec,), _ = build_engines(bundle_dir, precisions="fp16")
    engine = bundle_dir / rec["path"]
    good = engine.read_bytes()
    assert open_bundle(bundle_dir).manifest.status == "accepted"

    fake.faithful["fp16"] = False
    result = build_engines(bundle_dir, precisions="fp16", force=True)
    built, messages = result
    assert built == [] and fake.built == ["fp16", "fp16"]
    assert engine.is_file() and engine.read_bytes() == good and ec.sidecar_path(engine).is_file()
    assert "kept the installed engine" in messages[-1] and result.failed == ["fp16"]
    assert _engine_files(bundle_dir) == sorted([engine.name, ec.sidecar_path(engine).name])  # staging file gone
    m = open_bundle(bundle_dir).manifest
    assert m.status == "accepted" and [e["path"] for e in m.engines] == [rec["path"]]
    assert m.artifacts["tensorrt"] == rec["path"]
    assert [(g["engine"], g["passed"]) for g in _tensorrt_gates(bundle_dir)] == [(rec["path"], True)]
    found = ec.lookup(bundle_dir, model=m.model, onnx_sha256=sha256_file(bundle_dir / "model.onnx"), target=ORIN,
                      precision="fp16", records=ec.bundle_records(bundle_dir, m.engines))
    assert found.status == "fresh"
    # The CLI reports the failure (exit 1) and leaves the bundle accepted.
    cli = runner.invoke(app, ["export", "build-engine", str(bundle_dir), "--precision", "fp16", "--force"])
    assert cli.exit_code == 1 and "parity gate failed" in cli.output and "stays accepted" in cli.output
    assert open_bundle(bundle_dir).manifest.status == "accepted" and engine.read_bytes() == good


def test_failed_rebuild_of_an_engine_without_a_passing_gate_uninstalls_it(bundle_dir, monkeypatch):
    """An installed engine whose gate record is gone (a parity.json restored from a backup, say) and
    whose forced rebuild fails: it must not stay installed, or the next build-engine calls it fresh
    and the bundle stays rejected for good."""
    fake = FakeTensorRT(monkeypatch, faithful={})
    (rec,), _ = build_engines(bundle_dir, precisions="fp16")
    parity = json.loads((bundle_dir / "parity.json").read_text())
    parity["artifacts"] = [r for r in parity["artifacts"] if r["artifact"] != "tensorrt"]
    (bundle_dir / "parity.json").write_text(json.dumps(parity))
    fake.faithful["fp16"] = False
    result = build_engines(bundle_dir, precisions="fp16", force=True)
    assert result.failed == ["fp16"] and not (bundle_dir / rec["path"]).exists()
    m = open_bundle(bundle_dir).manifest
    assert m.status == "rejected" and m.engines == []
    fake.faithful["fp16"] = True  # the next build-engine builds it again (not "up to date") and passes
    built, _ = build_engines(bundle_dir, precisions="fp16")
    assert [r["precision"] for r in built] == ["fp16"] and fake.built == ["fp16"] * 3
    assert open_bundle(bundle_dir).manifest.status == "accepted"


def test_accepted_latency_only_bundle_installs_only_engines_that_pass(bundle_dir, monkeypatch):
    """latency_only with status accepted (a hand-made bundle): only "unchecked" skips the gate."""
    data = json.loads((bundle_dir / "manifest.json").read_text())
    data["latency_only"] = True
    (bundle_dir / "manifest.json").write_text(json.dumps(data))
    assert open_bundle(bundle_dir).manifest.status == "accepted"
    FakeTensorRT(monkeypatch, faithful={"fp16": False})
    result = build_engines(bundle_dir, precisions="fp16")
    built, _ = result
    assert built == [] and _engine_files(bundle_dir) == []
    m = open_bundle(bundle_dir).manifest
    assert m.engines == [] and m.status == "rejected"
    (gate,) = _tensorrt_gates(bundle_dir)
    assert not gate["passed"] and not gate.get("informative_only") and result.failed == ["fp16"]


def test_rejected_manifest_is_written_before_parity_json(bundle_dir, monkeypatch):
    from edge_bus.exporting import parity as P

    FakeTensorRT(monkeypatch, faithful={"fp16": False})
    assert open_bundle(bundle_dir).manifest.status == "accepted"

    def crash(report, path):
        raise KeyboardInterrupt  # killed between the two writes

    monkeypatch.setattr(P, "write_parity", crash)
    with pytest.raises(KeyboardInterrupt):
        build_engines(bundle_dir, precisions="fp16")
    assert open_bundle(bundle_dir).manifest.status == "rejected"


@pytest.mark.parametrize("where", ["compare", "engine"])
def test_interrupted_gate_leaves_no_staging_file(bundle_dir, monkeypatch, where):
    from edge_bus.exporting import parity as P

    fake = FakeTensorRT(monkeypatch, faithful={})
    if where == "compare":
        monkeypatch.setattr(P, "compare", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    else:
        monkeypatch.setattr(bundle_export, "_run_engine", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        build_engines(bundle_dir, precisions="fp16")
    assert fake.built == ["fp16"] and _engine_files(bundle_dir) == []
    assert open_bundle(bundle_dir).manifest.status == "accepted"


def test_stale_engine_of_another_model_is_uninstalled_with_its_record(bundle_dir, monkeypatch):
    FakeTensorRT(monkeypatch, faithful={})
    old = ec.make_record("seg", "0" * 64, ORIN, "fp16")  # built from a model.onnx this bundle no longer has
    (bundle_dir / old.path).parent.mkdir(exist_ok=True)
    (bundle_dir / old.path).write_bytes(b"old engine")
    ec.write_record(old, bundle_dir)
    m = open_bundle(bundle_dir).manifest
    m.engines = [old.to_dict()]
    m.artifacts["tensorrt"] = old.path
    from edge_bus.bundle import write_manifest

    write_manifest(m, bundle_dir / "manifest.json")
    built, messages = build_engines(bundle_dir, precisions="fp16")
    assert "rebuilding" in messages[0] and "another model.onnx" in messages[0]
    (new,) = built
    assert _engine_files(bundle_dir) == sorted([Path(new["path"]).name, Path(new["path"]).with_suffix(".json").name])
    m = open_bundle(bundle_dir).manifest
    assert [e["path"] for e in m.engines] == [new["path"]] and m.artifacts["tensorrt"] == new["path"]
    assert m.status == "accepted"
