import json

import cv2
import pytest
from typer.testing import CliRunner

from edge_bus.cli import app

from bundles import make_bundle
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
