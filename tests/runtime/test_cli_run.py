import json
import os

import cv2
import pytest
from typer.testing import CliRunner

from edge_bus.cli import app
from edge_bus.runtime import sources

from bundles import make_bundle
from fakes import FlakyLiveSource
from test_pipeline import write_video

runner = CliRunner()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    return make_bundle(root / "cls", "classification", size=64), make_bundle(root / "seg", "segmentation", size=64)


@pytest.mark.timeout(120)
def test_run_end_to_end(tmp_path, bundles):
    cls, seg = bundles
    video = write_video(tmp_path / "clip.mp4", 20, size=(160, 120))
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "--source", str(video), "--classifier", str(cls), "--segmenter", str(seg),
                                 "--backend", "auto", "--out", str(out), "--batch", "3", "--roi", "auto",
                                 "--sinks", "jsonl,overlay,masks", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "onnxruntime[CPUExecutionProvider]" in result.output and "frames" in result.output
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(20))
    assert all(r["class"] in ("benign", "malignant", "normal") and r["segmented"] for r in records)
    assert len(list((out / "masks").glob("*.png"))) == 20
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 20
    cap.release()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 20 and summary["drops"] == 0


@pytest.mark.timeout(120)
def test_run_with_config_file_and_overrides(tmp_path, bundles):
    cls, _ = bundles
    config = tmp_path / "run.yaml"
    config.write_text(f"source: synthetic://?fps=0&size=96x96\nclassifier: {cls}\nout: {tmp_path / 'o'}\nmax_frames: 500\n")
    result = runner.invoke(app, ["run", "--config", str(config), "--max-frames", "7", "--quiet"])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "o" / "results.jsonl").read_text().splitlines()) == 7


@pytest.mark.parametrize(
    "args, words",
    [
        (["--source", "nope://x"], "unknown source scheme"),
        (["--source", "synthetic://", "--backend", "warp"], "backend"),
        (["--source", "synthetic://"], None),  # rejected bundle, see below
    ],
)
def test_run_errors_are_one_line(tmp_path, bundles, args, words):
    cls, _ = bundles
    bundle = cls
    if words is None:
        bundle = make_bundle(tmp_path / "rej", "classification", size=64, status="rejected")
        words = "allow-rejected"
    result = runner.invoke(app, ["run", *args, "--classifier", str(bundle), "--quiet"])
    assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output


def run_synthetic(cls, out, *extra, frames=5):
    return runner.invoke(app, ["run", "--source", f"synthetic://?fps=0&size=64x64&frames={frames}",
                               "--classifier", str(cls), "--out", str(out), "--quiet", *extra])


@pytest.mark.timeout(120)
def test_a_lost_live_source_exits_3_so_that_systemd_restarts(tmp_path, bundles, monkeypatch):
    cls, _ = bundles
    monkeypatch.setitem(sources.SCHEMES, "flaky", lambda uri, target, options: FlakyLiveSource([3], fail_reopens=0))
    config = tmp_path / "run.yaml"
    config.write_text(f"source: flaky://cam\nclassifier: {cls}\nout: {tmp_path / 'o'}\n"
                      "reconnect_attempts: 2\nreconnect_backoff_s: 0.01\nmax_failed_reads: 0\n")
    result = runner.invoke(app, ["run", "--config", str(config), "--quiet"])
    assert result.exit_code == 3, result.output
    assert "source lost after 2 reconnect attempts" in result.output and "Traceback" not in result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["source_lost"] is True and summary["frames"] == 3
    # a file source (here: phantoms that end) that ends normally exits 0
    assert run_synthetic(cls, tmp_path / "file").exit_code == 0


@pytest.mark.timeout(120)
def test_a_second_run_into_the_same_out_is_refused_unless_overwrite(tmp_path, bundles):
    cls, _ = bundles
    out = tmp_path / "out"
    assert run_synthetic(cls, out, frames=7).exit_code == 0
    again = run_synthetic(cls, out, frames=3)
    assert again.exit_code == 2 and "results.jsonl" in again.output and "--overwrite" in again.output
    assert len((out / "results.jsonl").read_text().splitlines()) == 7  # the first run's results are intact
    replaced = run_synthetic(cls, out, "--overwrite", frames=3)
    assert replaced.exit_code == 0, replaced.output
    assert len((out / "results.jsonl").read_text().splitlines()) == 3


@pytest.mark.timeout(120)
def test_per_run_folders_keep_every_run_and_prune_old_ones(tmp_path, bundles):
    cls, _ = bundles
    out = tmp_path / "out"
    for frames in (2, 3, 4):
        result = run_synthetic(cls, out, "--per-run-folder", "--keep-runs", "2", frames=frames)
        assert result.exit_code == 0, result.output
    runs = sorted(p for p in out.iterdir() if p.name != "latest")
    assert len(runs) == 2  # the oldest was deleted when the third started
    latest = out / "latest"
    assert latest.is_symlink() and os.readlink(latest) in {p.name for p in runs}
    assert len((latest / "results.jsonl").read_text().splitlines()) == 4
    assert json.loads((latest / "summary.json").read_text())["out_dir"] == str(out / os.readlink(latest))
    assert not (out / "results.jsonl").exists()
