"""One end-to-end iteration, stage by stage: decode -> preprocess -> inference -> postprocess.

The runtime's pipeline overlaps these stages in threads; here they run one after the other so each
can be timed on its own. Frames come from the runtime's sources (`open_source`), preprocessing is
THE preprocessing (edge_bus.data.preprocess) and postprocessing turns logits into what the runtime
reports: class probabilities, or a lesion mask at the frame's size.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import cv2
import numpy as np

from edge_bus.benchmarking.latency import Step
from edge_bus.data.preprocess import PreprocessSpec, preprocess_batch
from edge_bus.errors import SourceError

Infer = Callable[[np.ndarray], np.ndarray]  # float32 (N,1,S,S) -> logits, device-synchronized


class FrameFeed:
    """Endless frames from a source URI (a file source is reopened at its end)."""

    def __init__(self, uri: str):
        from edge_bus.runtime.sources import open_source

        self.uri = uri
        self.source = open_source(uri)

    def read(self) -> np.ndarray:
        frame = self.source.read()
        if frame is None:
            self.source.reopen()
            frame = self.source.read()
            if frame is None:
                raise SourceError(f"{self.uri}: the source gave no frame; pass a readable video, folder or synthetic://")
        if frame.error is not None:
            raise SourceError(f"{self.uri}: frame {frame.id} could not be decoded ({frame.error})")
        return frame.image

    def close(self) -> None:
        self.source.close()


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def postprocess(task: str, threshold: float) -> Callable[[np.ndarray, list[np.ndarray]], list]:
    """logits of a batch -> per-frame result (class index and probabilities, or a full-size mask)."""
    if task == "classification":

        def classify(logits: np.ndarray, frames: list[np.ndarray]) -> list:
            probs = _softmax(np.asarray(logits, dtype=np.float32))
            return [(int(p.argmax()), p) for p in probs]

        return classify
    cut = math.log(threshold / (1.0 - threshold))  # sigmoid(x) > t  <=>  x > logit(t)

    def segment(logits: np.ndarray, frames: list[np.ndarray]) -> list:
        masks = (np.asarray(logits)[:, 0] > cut).astype(np.uint8)
        return [cv2.resize(m, (f.shape[1], f.shape[0]), interpolation=cv2.INTER_NEAREST) for m, f in zip(masks, frames)]

    return segment


def end_to_end_step(
    feed: FrameFeed,
    batch: int,
    spec: PreprocessSpec,
    infer: Infer,
    post: Callable[[np.ndarray, list[np.ndarray]], list],
    clock: Callable[[], float] = time.perf_counter,
) -> Step:
    """A Step for latency.measure: times each stage of one batch in milliseconds."""
    buffer = np.empty((batch, 1, spec.size, spec.size), dtype=np.float32)

    def step() -> dict[str, float]:
        t0 = clock()
        frames = [feed.read() for _ in range(batch)]
        t1 = clock()
        x = preprocess_batch(frames, spec, out=buffer)
        t2 = clock()
        logits = infer(x)
        t3 = clock()
        post(logits, frames)
        t4 = clock()
        return {
            "decode": (t1 - t0) * 1e3,
            "preprocess": (t2 - t1) * 1e3,
            "inference": (t3 - t2) * 1e3,
            "postprocess": (t4 - t3) * 1e3,
        }

    return step
