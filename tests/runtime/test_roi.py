import cv2
import numpy as np
import pytest

from edge_bus.errors import ConfigError
from edge_bus.runtime.roi import Roi, find_roi, parse_roi
from edge_bus.runtime.sources import open_source


def scanner_frame(rng, h=480, w=640):
    """A bright fan-shaped sector with speckle, surrounded by text, a logo, a scale and a line."""
    frame = np.zeros((h, w, 3), np.uint8)
    sector = np.zeros((h, w), np.uint8)
    cv2.ellipse(sector, (320, 60), (380, 380), 0, 55, 125, 255, -1)  # apex at (320, 60)
    sector[:90] = 0
    speckle = rng.rayleigh(60, (h, w)).clip(0, 255).astype(np.uint8)
    frame[sector > 0] = speckle[sector > 0][:, None]
    for i, text in enumerate(["GE LOGIQ", "MI 1.1 TIS 0.3", "Breast L12-5"]):
        cv2.putText(frame, text, (8, 30 + 25 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1)
    cv2.putText(frame, "4.5 cm", (560, 460), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    for y in range(100, 440, 34):
        cv2.line(frame, (620, y), (630, y), (255, 255, 255), 1)
    cv2.line(frame, (0, 80), (w - 1, 80), (180, 180, 180), 1)
    cv2.drawMarker(frame, (300, 250), (255, 255, 255), cv2.MARKER_CROSS, 12, 1)  # caliper inside
    x, y, bw, bh = cv2.boundingRect(cv2.findNonZero(sector))
    return frame, Roi(x, y, bw, bh)


def test_auto_roi_finds_the_sector_not_the_text():
    rng = np.random.default_rng(0)
    frames, truth = [], None
    for _ in range(5):
        frame, truth = scanner_frame(rng)
        frames.append(frame)
    roi = find_roi(frames)
    assert abs(roi.x - truth.x) <= 6 and abs(roi.y - truth.y) <= 6
    assert abs(roi.w - truth.w) <= 12 and abs(roi.h - truth.h) <= 12


def test_parse_roi():
    assert parse_roi("none") is None and parse_roi(None) is None
    assert parse_roi("auto") == "auto"
    assert parse_roi("1,2,30,40") == Roi(1, 2, 30, 40)
    with pytest.raises(ConfigError):
        parse_roi("1,2,3")


@pytest.mark.video
def test_auto_roi_on_real_clips(cine_dir):
    # Expected image boxes, read off frames of each clip by eye (x0, y0, x1, y1), tolerance 5% of the frame.
    expected = {
        "butterfly-ocular-phantom.mp4": (80, 204, 690, 890),
        "clarius-ocular-short.mp4": (264, 87, 1008, 870),
        "sonosite-anon-eye1-video.mp4": (387, 41, 723, 640),
    }
    for name, (x0, y0, x1, y1) in expected.items():
        clip = cine_dir / name
        if not clip.exists():
            continue
        with open_source(str(clip)) as src:
            frames = [src.read().image for _ in range(10)]
        roi = find_roi(frames)
        h, w = frames[0].shape[:2]
        tol_x, tol_y = 0.05 * w, 0.05 * h
        got = (roi.x, roi.y, roi.x + roi.w, roi.y + roi.h)
        assert all(abs(a - b) <= t for a, b, t in zip(got, (x0, y0, x1, y1), (tol_x, tol_y, tol_x, tol_y))), (name, got)
