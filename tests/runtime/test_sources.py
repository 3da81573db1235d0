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


# -- capture format, arrival time, GStreamer --------------------------------------------------------
def fake_camera(monkeypatch, tmp_path, **kw):
    """A v4l2 device node (a plain file) opened through a FakeCapture; returns (uri, the fake)."""
    from edge_bus.runtime import sources

    from fakes import FakeCapture

    device = tmp_path / "video0"
    device.write_text("")
    cap = FakeCapture(**kw)
    monkeypatch.setattr(sources, "_video_capture", lambda target, api, params: cap)
    return f"v4l2://{device}", cap


def test_v4l2_format_is_read_back_and_a_mismatch_warned(monkeypatch, tmp_path, caplog):
    gives = {cv2.CAP_PROP_FOURCC: cv2.VideoWriter_fourcc(*"YUYV"), cv2.CAP_PROP_FRAME_WIDTH: 1280,
             cv2.CAP_PROP_FRAME_HEIGHT: 720, cv2.CAP_PROP_FPS: 10}  # a USB 2 card refusing MJPG 1080p30
    uri, cap = fake_camera(monkeypatch, tmp_path, gives=gives)
    src = open_source(uri, width=1920, height=1080, fps=30.0, pixel_format="mjpg")
    assert (cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG")) in cap.set_calls
    fmt = src.capture_format
    assert fmt["asked"] == {"pixel_format": "MJPG", "width": 1920, "height": 1080, "fps": 30.0}
    assert fmt["got"] == {"pixel_format": "YUYV", "width": 1280, "height": 720, "fps": 10.0}
    assert fmt["mismatch"] == ["pixel_format", "width", "height", "fps"]
    assert "asked for MJPG 1920x1080 @30 fps" in caplog.text and "gives YUYV 1280x720 @10 fps" in caplog.text
    assert "--list-formats-ext" in caplog.text


def test_v4l2_format_that_matches_is_not_warned_and_lands_in_the_summary(monkeypatch, tmp_path, caplog):
    from edge_bus.runtime.config import RunConfig
    from edge_bus.runtime.pipeline import Pipeline

    from fakes import fake_model

    gives = {cv2.CAP_PROP_FOURCC: cv2.VideoWriter_fourcc(*"MJPG"), cv2.CAP_PROP_FPS: 29.97}
    uri, _ = fake_camera(monkeypatch, tmp_path, gives=gives, shape=(72, 96, 3))
    src = open_source(uri, width=96, height=72, fps=30.0, pixel_format="MJPG")
    assert src.capture_format["mismatch"] == [] and "asked for" not in caplog.text  # 29.97 is 30 within 1 %
    c = RunConfig(source=uri, classifier="x", sinks=[], max_frames=3)
    summary = Pipeline(c, source=src, models=[fake_model()], handle_sigint=False).run()
    assert summary["capture_format"]["got"]["pixel_format"] == "MJPG"


def test_live_frames_are_timestamped_on_arrival(monkeypatch, tmp_path):
    """Waiting for the camera is neither decode time nor part of the total latency."""
    uri, _ = fake_camera(monkeypatch, tmp_path, wait_s=0.05)
    src = open_source(uri)
    before = time.perf_counter()
    frame = src.read()
    assert frame.t_mono >= before + 0.045 and frame.decode_ms < 20
    paced = open_source("synthetic://?fps=20&frames=3")  # a paced camera: waits 50 ms per frame
    frames = list(iter(paced.read, None))
    assert all(f.decode_ms < 20 for f in frames)


def test_gstreamer_pipelines_reading_files_are_not_live(monkeypatch, tmp_path, caplog):
    from edge_bus.runtime import sources
    from edge_bus.runtime.sources import gst_pipeline_is_live

    assert gst_pipeline_is_live("v4l2src device=/dev/video0 ! videoconvert ! appsink")
    assert gst_pipeline_is_live("rtspsrc location=rtsp://cam/1 ! decodebin ! videoconvert ! appsink")
    assert not gst_pipeline_is_live("filesrc location=clip.mp4 ! decodebin ! videoconvert ! appsink")
    assert not gst_pipeline_is_live(" multifilesrc location=f%05d.png ! pngdec ! appsink")
    assert not gst_pipeline_is_live("uridecodebin uri=file:///data/clip.mp4 ! videoconvert ! appsink")
    assert gst_pipeline_is_live("uridecodebin uri=rtsp://cam/1 ! videoconvert ! appsink")
    monkeypatch.setattr(sources, "gstreamer_available", lambda: True)
    from fakes import FakeCapture

    monkeypatch.setattr(sources, "_video_capture", lambda target, api, params: FakeCapture())
    src = open_source("gst://filesrc location=clip.mp4 ! decodebin ! videoconvert ! appsink drop=true")
    assert not src.live  # its end is the end of the run, and no frame is dropped
    assert "drop=true" in caplog.text
    assert open_source("v4l2src ! videoconvert ! appsink drop=true max-buffers=1").live


def test_gstreamer_frame_rates_are_fractions():
    from edge_bus.runtime.sources import csi_pipeline, gst_framerate

    assert [gst_framerate(f) for f in (30, 59.94, 29.97, 23.976, 12.5, 60)] == [
        "30/1", "60000/1001", "30000/1001", "24000/1001", "25/2", "60/1"]
    assert "framerate=60000/1001" in csi_pipeline(0, 1920, 1080, 59.94)
