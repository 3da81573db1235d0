"""The bounded frame queue between capture and inference, and the dynamic batcher.

Live sources call `put_newest` (a full queue drops its oldest frame, counted: latency stays
bounded); files call `put` (blocks while full: nothing is lost). `Batcher.next()` returns up to
`max_batch` frames, waiting at most `max_wait_s` after the first one.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

END = object()  # end-of-stream marker, travels through every queue


class FrameQueue:
    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("queue size must be >= 1")
        self.maxsize = maxsize
        self._items: deque = deque()
        self._cond = threading.Condition()
        self.dropped = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: Any, cancel: threading.Event | None = None, timeout: float = 0.1) -> bool:
        """Blocking put (file sources): waits while full; False if `cancel` was set meanwhile."""
        with self._cond:
            while len(self._items) >= self.maxsize and item is not END:
                if cancel is not None and cancel.is_set():
                    return False
                self._cond.wait(timeout)
            self._items.append(item)
            self._cond.notify_all()
            return True

    def put_newest(self, item: Any) -> int:
        """Non-blocking put (live sources): drop the oldest frames to make room; returns how many."""
        dropped = 0
        with self._cond:
            while len(self._items) >= self.maxsize and item is not END:
                old = self._items.popleft()
                if old is END:  # never drop the end marker
                    self._items.appendleft(old)
                    break
                dropped += 1
            self._items.append(item)
            self.dropped += dropped
            self._cond.notify_all()
        return dropped

    def get(self, timeout: float) -> Any | None:
        """The oldest item, or None after `timeout` seconds with nothing to get."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            item = self._items.popleft()
            self._cond.notify_all()
            return item


class Batcher:
    """Dynamic batching: up to `max_batch` frames, at most `max_wait_s` after the first."""

    def __init__(self, queue: FrameQueue, max_batch: int, max_wait_s: float) -> None:
        self.queue = queue
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self.ended = False

    def next(self, cancel: threading.Event | None = None, poll_s: float = 0.1) -> list:
        """A list of frames (may be empty once the stream has ended or `cancel` is set)."""
        batch: list = []
        if self.ended:
            return batch
        while True:
            if cancel is not None and cancel.is_set():
                return batch
            item = self.queue.get(poll_s)
            if item is END:
                self.ended = True
                return batch
            if item is not None:
                batch.append(item)
                break
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            item = self.queue.get(max(0.0, remaining)) if remaining > 0 else self.queue.get(0.0)
            if item is None:
                break
            if item is END:
                self.ended = True
                break
            batch.append(item)
        return batch
