import shutil
import socket
import subprocess
import time

import cv2
import numpy as np
import pytest

from edge_bus.errors import SourceError
from edge_bus.runtime.sources import SyntheticSource, gstreamer_available, open_source

from test_pipeline import write_video


def test_video_file_plain_path_and_file_uri(tmp_path):
    video = write_video(tmp_path / "clip.mp4", 12)
    for uri in (str(video), f"file://{video}"):
        with open_source(uri) as src:
            frames = []
            while (f := src.read()) is not None:
                frames.append(f)
        assert [f.id for f in frames] == list(range(12))
        assert all(f.source == "clip.mp4" and f.image.shape == (72, 96, 3) for f in frames)
        assert frames[0].t_capture <= frames[-1].t_capture and not src.live


def test_folder_glob_and_single_image(tmp_path):
    for name in ("b.png", "a.png", "c.jpg"):
        cv2.imwrite(str(tmp_path / name), np.full((20, 30), 7, np.uint8))
    (tmp_path / "notes.txt").write_text("x")
    names = [f.source for f in iter(open_source(str(tmp_path)).read, None)]
    assert names == ["a.png", "b.png", "c.jpg"]
    assert [f.source for f in iter(open_source(str(tmp_path / "*.png")).read, None)] == ["a.png", "b.png"]
    assert [f.source for f in iter(open_source(str(tmp_path / "b.png")).read, None)] == ["b.png"]


@pytest.mark.parametrize(
    "uri, words",
    [
        ("bogus://x", "unknown source scheme"),
        ("/no/such/clip.mp4", "no such file"),
        ("v4l2:///dev/video99", "v4l2-ctl"),
        ("synthetic://?size=big", "WIDTHxHEIGHT"),
        ("", "empty source"),
    ],
)
def test_clear_errors(uri, words):
    with pytest.raises(SourceError, match=words):
        open_source(uri)


def test_empty_folder_and_corrupt_video(tmp_path):
    with pytest.raises(SourceError, match="no image files"):
        open_source(str(tmp_path))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="cannot open this video"):
        open_source(str(bad))


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV has GStreamer")
def test_gstreamer_without_gstreamer_says_use_system_opencv():
    with pytest.raises(SourceError, match="system OpenCV"):
        open_source("videotestsrc ! videoconvert ! appsink")
    with pytest.raises(SourceError, match="system OpenCV"):
        open_source("gst://videotestsrc ! videoconvert ! appsink drop=true max-buffers=1")
    with pytest.raises(SourceError, match="appsink"):
        open_source("gst://videotestsrc ! fakesink")


def test_synthetic_rate_size_and_end():
    src = open_source("synthetic://?fps=100&size=80x60&frames=10")
    assert isinstance(src, SyntheticSource) and src.live
    t0 = time.perf_counter()
    frames = list(iter(src.read, None))
    elapsed = time.perf_counter() - t0
    assert len(frames) == 10 and frames[0].image.shape == (60, 80) and frames[0].image.dtype == np.uint8
    assert elapsed >= 9 / 100 * 0.9  # paced at 100 fps


@pytest.mark.video
def test_real_cine_clips(cine_dir):
    clips = sorted(cine_dir.glob("*.mp4"))
    assert clips
    for clip in clips:
        with open_source(str(clip)) as src:
            frames = [src.read() for _ in range(3)]
        assert all(f is not None and f.image.ndim == 3 and f.source == clip.name for f in frames)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def udp_stream():
    """ffmpeg sends a test pattern as MPEG-TS to 127.0.0.1 (loopback only), for at most 30 s."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed")
    port = _free_udp_port()
    proc = subprocess.Popen(
        [ffmpeg, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25",
         "-t", "30", "-c:v", "mpeg2video", "-g", "5", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield f"udp://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.mark.timeout(60)
def test_udp_stream_on_loopback(udp_stream, tmp_path):
    from edge_bus.runtime.config import RunConfig
    from edge_bus.runtime.pipeline import Pipeline

    from fakes import fake_model

    src = open_source(udp_stream, timeout_s=10)
    assert src.live
    c = RunConfig(source=udp_stream, classifier="x", out=str(tmp_path), max_frames=10, batch=2)
    summary = Pipeline(c, source=src, models=[fake_model()]).run()
    assert summary["frames"] == 10 and summary["ended_because"] == "max_frames"
