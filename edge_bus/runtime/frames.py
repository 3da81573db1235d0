"""The unit that flows through the runtime: one captured frame and where/when it came from."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Frame:
    id: int  # 0-based, in capture order, per source (not reset on reconnect)
    image: Any  # normally a NumPy array (H, W) or (H, W, C); validated later, never trusted
    source: str  # file name for folders/globs, URI otherwise
    t_capture: float = field(default_factory=time.time)  # wall clock (epoch seconds)
    t_mono: float = field(default_factory=time.perf_counter)  # monotonic, for latencies
    decode_ms: float = 0.0  # time spent reading/decoding this frame
    error: str | None = None  # set by a source that could not decode this frame (counted as bad)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape) if isinstance(self.image, np.ndarray) else ()


@dataclass
class FrameResult:
    """What the sinks receive for one processed frame (full-frame coordinates throughout)."""

    frame: Frame
    roi: list[int] | None  # [x, y, w, h] the models saw, None = the whole frame
    classification: Any = None  # postprocess.Classification or None
    lesion: Any = None  # postprocess.Lesion or None (no lesion, or no segmenter)
    segmented: bool = False  # a segmenter ran on this frame
    latency_ms: dict[str, float] = field(default_factory=dict)
    t_done: float = 0.0  # wall clock when postprocessing finished
    mask_file: str | None = None  # set by the masks sink

    def record(self) -> dict[str, Any]:
        """The JSON Lines record of this frame."""
        c, lesion = self.classification, self.lesion
        return {
            "frame": self.frame.id,
            "source": self.frame.source,
            "t_capture": round(self.frame.t_capture, 6),
            "t_done": round(self.t_done, 6),
            "shape": list(self.frame.shape[:2]),
            "roi": self.roi,
            "class": c.label if c is not None else None,
            "probs": c.probs if c is not None else None,
            "lesion": (
                {"box": [int(v) for v in lesion.box], "area_px": int(lesion.area_px)} if lesion is not None else None
            ),
            "segmented": self.segmented,
            "mask_file": self.mask_file,
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
        }
