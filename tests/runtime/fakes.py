"""Fakes for pipeline tests: a backend that sleeps, live sources that fail on cue; a subprocess runner."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

from edge_bus.bundle import Manifest, TensorSpec
from edge_bus.data.preprocess import PreprocessSpec
from edge_bus.errors import SourceError
from edge_bus.runtime.models import LoadedModel
from edge_bus.runtime.sources import Source

CLASSES = ["benign", "malignant", "normal"]


class SleepyBackend:
    """Returns fixed logits after sleeping `delay_s` per batch; records batch sizes."""

    name = "fake[sleepy]"

    def __init__(self, task: str, size: int = 32, delay_s: float = 0.0, on_call=None) -> None:
        self.task, self.size, self.delay_s, self.on_call = task, size, delay_s, on_call
        self.batches: list[int] = []
        self.inputs = [TensorSpec("input", ["batch", 1, size, size])]
        self.outputs = [TensorSpec("logits", ["batch", 3] if task == "classification" else ["batch", 1, size, size])]
        self.closed = False

    def __call__(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        assert batch.dtype == np.float32 and batch.shape[1:] == (1, self.size, self.size)
        self.batches.append(batch.shape[0])
        if self.on_call is not None:
            self.on_call(len(self.batches))
        if self.delay_s:
            time.sleep(self.delay_s)  # simulates a slow model, not synchronization
        n = batch.shape[0]
        if self.task == "classification":
            return {"logits": np.tile(np.array([[2.0, 0.0, -1.0]], np.float32), (n, 1))}
        logits = np.full((n, 1, self.size, self.size), -5.0, np.float32)
        logits[:, :, 8:16, 4:12] = 5.0  # an 8x8 lesion at x=4, y=8 in model pixels
        return {"logits": logits}

    def close(self) -> None:
        self.closed = True


def fake_model(task: str = "classification", size: int = 32, delay_s: float = 0.0, on_call=None) -> LoadedModel:
    classes = CLASSES if task == "classification" else ["lesion"]
    out = ["batch", 3] if task == "classification" else ["batch", 1, size, size]
    manifest = Manifest(task=task, model="fake", classes=classes, input=TensorSpec("input", ["batch", 1, size, size]),
                        output=TensorSpec("logits", out), preprocessing=PreprocessSpec(size=size))
    role = "classifier" if task == "classification" else "segmenter"
    return LoadedModel(role=role, manifest=manifest, backend=SleepyBackend(task, size, delay_s, on_call))


class ListSource(Source):
    """Yields the given images (anything, good or bad), then ends (a file-like source)."""

    def __init__(self, images, live: bool = False) -> None:
        super().__init__("list://")
        self.images = list(images)
        self.live = live
        self._i = 0

    def _read_image(self):
        if self._i >= len(self.images):
            return None
        self._i += 1
        return self.images[self._i - 1], f"img{self._i - 1}", None


class FlakyLiveSource(Source):
    """A live source: `script` lists, per connection, how many frames it gives before it is lost.

    Reopen attempts fail `fail_reopens` times before a connection succeeds; after the script runs out
    every reopen fails (the device never comes back).
    """

    live = True

    def __init__(self, script: list[int], fail_reopens: int = 1, shape=(48, 64)) -> None:
        super().__init__("flaky://cam")
        self.script = list(script)
        self.fail_reopens = fail_reopens
        self.shape = shape
        self.left = self.script.pop(0)
        self.reopen_calls = 0
        self._failed = 0
        self.released = threading.Event()

    def _read_image(self):
        if self.left <= 0:
            return None
        self.left -= 1
        return np.full(self.shape, 128, np.uint8), self.name, None

    def reopen(self) -> None:
        self.reopen_calls += 1
        if not self.script:
            raise SourceError(f"{self.uri}: device gone")
        if self._failed < self.fail_reopens:
            self._failed += 1
            raise SourceError(f"{self.uri}: not yet back")
        self._failed = 0
        self.left = self.script.pop(0)

    def _release(self) -> None:
        self.released.set()


class GlitchyLiveSource(Source):
    """A live source that plays `script`: an image is a good read, None a failed one; it ends after it."""

    live = True

    def __init__(self, script, shape=(48, 64), uri: str = "glitchy://cam") -> None:
        super().__init__(uri)
        self.script = list(script)
        self.shape = shape
        self.reopen_calls = 0
        self._i = 0

    def exhausted(self) -> bool:
        return self._i >= len(self.script)

    def _read_image(self):
        if self.exhausted():
            return None
        self._i += 1
        if self.script[self._i - 1] is None:
            return None
        return np.full(self.shape, 128, np.uint8), self.name, None

    def reopen(self) -> None:
        self.reopen_calls += 1


class FakeCapture:
    """Stands in for cv2.VideoCapture: remembers what was set, reports `gives` back, frames after `wait_s`."""

    def __init__(self, gives: dict | None = None, wait_s: float = 0.0, shape=(48, 64, 3)) -> None:
        import cv2

        self.props = {cv2.CAP_PROP_FOURCC: 0.0, cv2.CAP_PROP_FRAME_WIDTH: 640.0, cv2.CAP_PROP_FRAME_HEIGHT: 480.0,
                      cv2.CAP_PROP_FPS: 30.0}  # fmt: skip
        self.gives = gives or {}  # prop -> value the "card" reports whatever was asked
        self.set_calls: list[tuple[int, float]] = []
        self.wait_s = wait_s
        self.shape = shape
        self.released = False

    def isOpened(self) -> bool:
        return True

    def set(self, prop, value) -> bool:
        self.set_calls.append((prop, value))
        self.props[prop] = value
        return True

    def get(self, prop) -> float:
        return float(self.gives.get(prop, self.props.get(prop, 0.0)))

    def grab(self) -> bool:
        time.sleep(self.wait_s)  # the camera's frame interval: waiting, not decoding
        return True

    def retrieve(self):
        return True, np.full(self.shape, 77, np.uint8)

    def read(self):
        self.grab()
        return self.retrieve()

    def release(self) -> None:
        self.released = True


class StallingLiveSource(GlitchyLiveSource):
    """A GlitchyLiveSource whose failed reads first block `stall_s`, as a stalled network stream's
    reads wait for their timeout."""

    def __init__(self, script, stall_s: float, shape=(48, 64)) -> None:
        super().__init__(script, shape, uri="stalling://cam")
        self.stall_s = stall_s

    def _read_image(self):
        if not self.exhausted() and self.script[self._i] is None:
            time.sleep(self.stall_s)  # the read timeout of a stalled stream, not synchronization
        return super()._read_image()


HERE = Path(__file__).resolve().parent


def run_isolated(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `code` in a fresh Python (these fakes importable): a test that sends a real signal to its own
    process cannot kill the test run when the code under test mishandles it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip
