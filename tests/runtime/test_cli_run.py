import json
import os

import cv2
import pytest
from typer.testing import CliRunner

from edge_bus.cli import app
from edge_bus.runtime import sources
from edge_bus.runtime.sinks import run_folders

from bundles import make_bundle
from fakes import FlakyLiveSource, run_isolated
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
    runs = run_folders(out)  # oldest first; the counter file out/.run-counter is no run
    assert len(runs) == 2  # the oldest was deleted when the third started
    assert [json.loads((p / "summary.json").read_text())["frames"] for p in runs] == [3, 4]  # the newest survive
    latest = out / "latest"
    assert latest.is_symlink() and os.readlink(latest) in {p.name for p in runs}
    assert len((latest / "results.jsonl").read_text().splitlines()) == 4
    assert json.loads((latest / "summary.json").read_text())["out_dir"] == str(out / os.readlink(latest))
    assert not (out / "results.jsonl").exists()


@pytest.mark.timeout(120)
def test_a_run_that_gets_no_frame_leaves_no_run_folder(tmp_path, bundles, monkeypatch):
    """The card is plugged in but gives no signal: exit 3, restarted by systemd every few seconds; those
    runs must not fill keep_runs with empty folders."""
    cls, _ = bundles
    out = tmp_path / "out"
    assert run_synthetic(cls, out, "--per-run-folder", "--keep-runs", "2", frames=4).exit_code == 0
    (real,) = run_folders(out)
    monkeypatch.setitem(sources.SCHEMES, "flaky", lambda uri, target, options: FlakyLiveSource([0], fail_reopens=0))
    config = tmp_path / "run.yaml"
    config.write_text(f"source: flaky://cam\nclassifier: {cls}\nout: {out}\nout_per_run: true\nkeep_runs: 2\n"
                      "reconnect_attempts: 1\nreconnect_backoff_s: 0.01\nmax_failed_reads: 0\n")
    for _ in range(3):
        result = runner.invoke(app, ["run", "--config", str(config), "--quiet"])
        assert result.exit_code == 3, result.output
        assert "results in" not in result.output
    assert run_folders(out) == [real] and os.readlink(out / "latest") == real.name


@pytest.mark.parametrize("signame, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_stop_while_the_models_load_exits_128_plus_the_signal(tmp_path, signame, code):
    """`systemctl stop` during an engine load: 143, which the units' SuccessExitStatus= lists (no failure)."""
    done = run_isolated(f"""
        import os, signal, sys
        from edge_bus.runtime import pipeline
        from edge_bus.cli import app
        from fakes import fake_model

        def load_model(*args, **kwargs):
            os.kill(os.getpid(), signal.{signame})
            return fake_model()

        pipeline.load_model = load_model
        app(["run", "--source", "synthetic://?frames=3", "--classifier", "x", "--out", {str(tmp_path / "o")!r},
             "--quiet"])
    """)
    assert done.returncode == code, done.stdout + done.stderr
    assert ("terminated" if signame == "SIGTERM" else "interrupted") in done.stderr


def test_the_summary_shows_a_capture_format_as_info_does():
    from edge_bus.cli.run import print_summary
    from edge_bus.runtime.sources import describe_capture

    capture = {"asked": {"pixel_format": "MJPG", "width": 1920, "height": 1080},
               "got": {"pixel_format": "YUYV", "width": 1280, "height": 720, "fps": 10.0},
               "mismatch": ["pixel_format", "width", "height"]}  # fmt: skip
    summary = {"source": "v4l2:///dev/video0", "backend": "b", "frames": 1, "drops": 0, "bad_frames": 0,
               "reconnects": 0, "fps": 1.0, "capture_format": capture, "latency_ms": {}, "ended_because": "x"}
    from edge_bus.cli import _common

    with _common.console.capture() as out:
        print_summary(summary)
    assert describe_capture(capture) == "gives YUYV 1280x720 @10 fps; asked pixel_format MJPG, width 1920, height 1080"
    assert describe_capture(capture) in out.get()
