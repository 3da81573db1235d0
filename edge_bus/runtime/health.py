"""Health report of a running pipeline (docs/CONTRACTS.md "Health").

`HealthReporter(path, interval_s)` keeps the newest pipeline statistics and writes them as JSON
to `path` at most once per `interval_s` (write a temporary file in the same folder, then
`os.replace`: a reader never sees half a file). Optionally it serves the same JSON on
`GET /health` from a tiny HTTP server bound to 127.0.0.1 only (off by default).

The written document:
    {"state": "running" | "stopped", "fps", "frames", "drops", "bad_frames", "last_error",
     "uptime": seconds, "backend", "source", "pid", "updated_at": ISO-8601 UTC, ...extra stats}

`fps` is taken from the stats when given, otherwise computed from the change of `frames` between
two writes. A failure to write (disk full, permissions) is logged and never stops the pipeline.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from edge_bus.errors import ConfigError
from edge_bus.fileio import write_json_atomic as _write_json_atomic

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
BASE_FIELDS = ("fps", "frames", "drops", "bad_frames", "last_error", "backend", "source")


def write_json_atomic(path: str | Path, data: dict[str, Any]) -> Path:
    """Health documents are written with sorted keys through the shared atomic writer.

    Kept under this name for callers that imported it from here; new code uses
    `edge_bus.fileio.write_json_atomic`.
    """
    return _write_json_atomic(path, data, sort_keys=True)


class HealthReporter:
    """Rate-limited, atomic health file (and optional loopback HTTP endpoint)."""

    def __init__(
        self,
        path: str | Path | None,
        interval_s: float = 2.0,
        *,
        http_port: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval_s <= 0:
            raise ConfigError(f"health_interval_s must be > 0, got {interval_s}")
        self.path = Path(path) if path is not None else None
        self.interval_s = float(interval_s)
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._stats: dict[str, Any] = {
            "fps": 0.0, "frames": 0, "drops": 0, "bad_frames": 0, "last_error": None,
            "backend": None, "source": None,
        }  # fmt: skip
        self._state = "running"
        self._last_write: float | None = None
        self._last_frames: tuple[float, int] | None = None  # (time, frames) at the last fps sample
        self._fps = 0.0
        self._fps_given = False  # the pipeline reports its own fps
        self.write_errors = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(self.path, self.snapshot())
            except OSError as exc:
                raise ConfigError(
                    f"health_file: cannot write {self.path} ({exc.strerror or exc}); "
                    "fix the folder's permissions or choose another health_file"
                ) from None
            self._last_write = clock()
        if http_port is not None:
            self._start_http(http_port)

    # -- public API ---------------------------------------------------------------------------

    def update(self, stats: dict[str, Any]) -> bool:
        """Record the newest stats; write the file if `interval_s` has passed. Returns True if written."""
        now = self._clock()
        with self._lock:
            self._stats.update(stats)
            self._fps_given = self._fps_given or "fps" in stats
            due = self._last_write is None or now - self._last_write >= self.interval_s
            if due:
                self._sample_fps(now)
        if due:
            return self._write(now)
        return False

    def close(self, final_stats: dict[str, Any] | None = None) -> None:
        """Write the final stats with state 'stopped' (not rate-limited) and stop the HTTP server."""
        now = self._clock()
        with self._lock:
            if final_stats:
                self._stats.update(final_stats)
                self._fps_given = self._fps_given or "fps" in final_stats
            self._sample_fps(now)
            self._state = "stopped"
        self._write(now)
        self._stop_http()

    def snapshot(self) -> dict[str, Any]:
        """The document that is written (and served), as of now."""
        with self._lock:
            doc = dict(self._stats)
            if not self._fps_given:
                doc["fps"] = round(self._fps, 3)
            doc.update(
                state=self._state,
                uptime=round(self._clock() - self._started, 3),
                pid=os.getpid(),
                updated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )
        return doc

    @property
    def http_address(self) -> tuple[str, int] | None:
        """(host, port) of the HTTP endpoint, or None when it is off."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def __enter__(self) -> HealthReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._state != "stopped":
            self.close()

    # -- internals ----------------------------------------------------------------------------

    def _sample_fps(self, now: float) -> None:
        """Update the computed fps from the frames counter (caller holds the lock)."""
        frames = self._stats.get("frames")
        if not isinstance(frames, (int, float)):
            return
        if self._last_frames is not None:
            t0, f0 = self._last_frames
            if now > t0:
                self._fps = max(0.0, (frames - f0) / (now - t0))
        self._last_frames = (now, frames)

    def _write(self, now: float) -> bool:
        if self.path is None:
            return False
        doc = self.snapshot()
        try:
            write_json_atomic(self.path, doc)
        except OSError as exc:
            self.write_errors += 1
            if self.write_errors == 1 or self.write_errors % 100 == 0:
                log.warning("cannot write health file %s: %s (%d failures)", self.path, exc, self.write_errors)
            return False
        self._last_write = now
        return True

    def _start_http(self, port: int) -> None:
        reporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                if self.path.split("?")[0].rstrip("/") != "/health":
                    self.send_error(404, "only GET /health is served")
                    return
                body = json.dumps(reporter.snapshot(), sort_keys=True, default=str).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("health http: " + format, *args)

        try:
            self._server = ThreadingHTTPServer((LOOPBACK, port), Handler)
        except OSError as exc:
            raise ConfigError(
                f"health_port: cannot listen on {LOOPBACK}:{port} ({exc.strerror or exc}); "
                "choose another port or leave health_port out"
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="edge-bus-health", daemon=True)
        self._thread.start()

    def _stop_http(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


__all__ = ["HealthReporter", "write_json_atomic", "LOOPBACK"]
