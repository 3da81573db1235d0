"""The streaming pipeline: capture -> bounded queue -> batcher/preprocess -> backend -> postprocess -> sinks.

Four threads overlap the work so that decoding, preprocessing, postprocessing and writing hide
behind inference (OpenCV and the backends release the GIL):

    capture     source.read(); live sources keep the newest frames (drops counted), files block
    prepare     dynamic batch, ROI crop, validation (bad frames counted), preprocess_batch into a
                pool of reused buffers (one per distinct preprocessing spec)
    infer       every model on the batch (a backend splits batches above its bundle's maximum)
    post        postprocess each frame, write every sink, count

`Pipeline.run()` returns the summary. Ctrl-C, SIGTERM (systemd, `docker stop`) or `stop()` stop
capturing, drain the queues, flush every sink and return the summary; a second signal abandons the
drain. A live source is reopened with exponential backoff when it gives no good frame for
`no_frame_timeout_s` seconds (a stalled network stream whose reads each time out is reopened after
its first timed-out read, not after several) or fails more than `max_failed_reads` reads in a row
(each tolerated failure is counted as a bad frame); when it does not come back the run ends cleanly
with `summary["source_lost"]` true, which `edge-bus run` turns into exit code 3 so that a service
manager restarts it. A file source that ends normally is not "lost". A per-run results folder of a
run that processed no frame is deleted at the end (`sinks.discard_run_folder`).

Live sources and latency. For a live source the prepare stage waits for a free buffer *before* it
takes frames from the queue (frames taken first would age while newer ones are dropped), and only
two buffers circulate (one in inference, one being filled), so a frame waits for at most about two
inferences; with `queue_size` about `batch`, `queue_size + 2 * batch` frames are in flight at most.
Files use three buffers and take the batch first: nothing is dropped and throughput is what counts.

Signals. From the end of `open()` until `run()` (or `close()`) ends, in the main thread, SIGINT and
SIGTERM handlers only count the signal (the previous handlers are restored afterwards, the default
action where a previous one was set outside Python); a signal between `open()` and `run()` makes
the run stop at once. The main thread waits on Events in
short timed slices, turns the count into stop/abort and never calls Thread.join. A KeyboardInterrupt
raised inside `Thread.join` can mark a still-running thread as stopped (CPython 3.11's
`_wait_for_tstate_lock` releases the thread's own lock on any exception): the main thread then
closed the sinks under a post stage that was still writing, which lost frames or wedged the video
writer. The drain is bounded (`drain_timeout_s`), and so is the wait for every stage after it
(`worst_case_stop_s()`, which the deployed units' stop timeouts are derived from). While `open()`
loads the models SIGTERM raises `Terminated`, a KeyboardInterrupt, like Ctrl-C (Python as PID 1 in
a container would otherwise ignore it); `edge-bus run` exits 143 on it (130 for Ctrl-C).

Benchmarks run the real pipeline without writing files:
    Pipeline(RunConfig(source=uri, classifier=..., segmenter=..., backend=..., precision=...,
                       batch=B, max_frames=N, sinks=[]), handle_sigint=False).run() -> summary
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from edge_bus.data.preprocess import PreprocessSpec, preprocess_batch, to_gray
from edge_bus.errors import EdgeBusError, PreprocessError, SourceError
from edge_bus.fileio import write_json_atomic
from edge_bus.runtime.backends import BackendOptions
from edge_bus.runtime.batcher import END, Batcher, FrameQueue
from edge_bus.runtime.config import NO_FRAME_TIMEOUT_S
from edge_bus.runtime.frames import Frame, FrameResult
from edge_bus.runtime.models import LoadedModel, load_model
from edge_bus.runtime.postprocess import classify, region_of, segment
from edge_bus.runtime.roi import Roi, find_roi, parse_roi
from edge_bus.runtime.sinks import (SUMMARY_FILE, Sink, discard_run_folder, holds_results, make_sinks, prune_run_folders,
                                    refuse_overwrite, results_folder)
from edge_bus.runtime.sources import Source, VideoFileSource, open_source
from edge_bus.runtime.stats import RunStats

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often blocked stages look at the stop/abort events
WAIT_SLICE_S = 0.1  # the main thread's longest uninterrupted wait (Ctrl-C is acted on within this)
STAGE_EXIT_S = 5.0  # after the drain: how long stages get to leave, once gracefully and once aborted
DRAIN_TIMEOUT_S = 15.0  # after a stop: how long the queued frames get to be processed
POOL_SLOTS = 3  # files: preprocessed batches in flight: one being filled, one queued, one in inference
LIVE_POOL_SLOTS = 2  # live sources: one in inference, one being filled (a frame waits <= ~2 inferences)
ROI_FRAMES = 10  # frames looked at by roi="auto"
STOP_SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


class Terminated(KeyboardInterrupt):
    """SIGTERM while the models load: interrupts like Ctrl-C; `signum` tells the two apart (exit 143, not 130)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


def worst_case_stop_s(drain_timeout_s: float = DRAIN_TIMEOUT_S, stage_exit_s: float = STAGE_EXIT_S) -> float:
    """Longest wait from a stop signal to the sinks being closed, apart from the close (flush, fsync) itself:
    the drain, then stage_exit_s for the post stage once aborted, for the other stages, and for a sink write."""
    return drain_timeout_s + 3 * stage_exit_s


def _spec_key(spec: PreprocessSpec) -> str:
    return json.dumps(spec.to_dict(), sort_keys=True)


class Pipeline:
    """Run one RunConfig. `source`, `models` and `sinks` may be given (tests, benchmarks)."""

    def __init__(
        self,
        config: Any,
        *,
        source: Source | None = None,
        models: list[LoadedModel] | None = None,
        sinks: list[Sink] | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        progress_interval_s: float = 0.5,
        drain_timeout_s: float = DRAIN_TIMEOUT_S,
        roi_frames: int = ROI_FRAMES,
        threads: int | None = None,
        handle_sigint: bool = True,
        stage_exit_s: float = STAGE_EXIT_S,
        overwrite: bool = True,
    ) -> None:
        self.config = config
        self.source = source
        self.models = models
        self.sinks = sinks
        self.on_progress = on_progress
        self.progress_interval_s = progress_interval_s
        self.drain_timeout_s = drain_timeout_s
        self.roi_frames = roi_frames
        self.threads = threads
        self.handle_sigint = handle_sigint
        self.stage_exit_s = stage_exit_s
        self.overwrite = overwrite  # False: refuse to write over an earlier run's results in out/ (the CLI)
        self.out_dir: Path | None = None  # where this run writes (a per-run folder with out_per_run)
        self.stats = RunStats()
        self.roi: Roi | None = None
        self._owned: list[Any] = []  # things this pipeline opened and must close
        self._stop = threading.Event()  # graceful: stop capturing, drain, flush
        self._abort = threading.Event()  # hard: every stage leaves now
        self._failure: BaseException | None = None
        self._bad_logged = 0
        self._signals = 0  # SIGINT/SIGTERM counted by the handler; acted on by the main thread
        self._signals_seen = 0
        self._last_signal = signal.SIGINT
        self._saved_handlers: dict[int, Any] = {}  # signal -> the handler before ours, given back at the end
        self._run_folder: Path | None = None  # the per-run folder this pipeline made (deleted when no frame came)
        self._finished = False
        self._made_sinks = False  # the sinks were made here (closed here when open() fails)
        self._done: dict[str, threading.Event] = {}  # stage name -> set when the stage has left
        self._sink_lock = threading.Lock()  # the post stage writes and _shutdown closes under it
        self._sinks_closed = False

    # -- control ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop capturing; what is queued is still processed and every sink is flushed."""
        if not self.stats.ended_because:
            self.stats.ended_because = "stopped"
        self._stop.set()

    def abort(self) -> None:
        self._stop.set()
        self._abort.set()

    # -- opening ------------------------------------------------------------------------------
    def open(self) -> None:
        """Open what was not given: models first (fail fast on bad bundles), then the source, then sinks."""
        if getattr(self, "_opened", False):
            return
        self._take_signals({signal.SIGTERM: _raise_terminated})  # while models load: SIGTERM interrupts like Ctrl-C
        try:
            self._open_all()
            # from here until run() ends SIGINT and SIGTERM are counted, with no gap in between in which
            # SIGTERM would have its default action (ignored by PID 1 in a container)
            self._take_signals({signum: self._on_signal for signum in STOP_SIGNALS})
        except BaseException:
            try:
                if self._made_sinks:
                    for sink in self.sinks or []:
                        with contextlib.suppress(Exception):
                            sink.close()
                    self._sinks_closed = True
                self._close_owned()
                self._discard_empty_run_folder()
            finally:
                self._give_back_signals()
            raise

    def close(self) -> None:
        """After open() without run(): flush and close what open() made, give the signal handlers back.
        run() does this itself; calling it again does nothing."""
        self._finish(None)

    def _open_all(self) -> None:
        cfg = self.config
        self._roi_setting = parse_roi(getattr(cfg, "roi", "none"))
        per_run = bool(getattr(cfg, "out_per_run", False))
        if self.sinks is None and not per_run:
            refuse_overwrite(cfg.out, list(cfg.sinks), overwrite=self.overwrite)  # before minutes of model loading
        if self.models is None:
            self.models = []
            for role in ("classifier", "segmenter"):
                path = getattr(cfg, role)
                if path:
                    model = self._load_model(role, path)
                    self.models.append(model)
                    self._owned.append(model)
        if not self.models:
            raise EdgeBusError("no model to run: give a classifier and/or a segmenter bundle")
        if self.source is None:
            self.source = open_source(cfg.source, width=cfg.width, height=cfg.height, fps=cfg.fps,
                                      pixel_format=cfg.pixel_format)
            self._owned.append(self.source)
        if self.sinks is None:
            fps = self.source.fps if isinstance(self.source, VideoFileSource) else (cfg.fps or 25.0)
            # checked again: results may have appeared while the models loaded (another run, same --out)
            self.out_dir = results_folder(cfg.out, list(cfg.sinks), per_run=per_run, overwrite=self.overwrite)
            if per_run:
                self._run_folder = self.out_dir
            self.sinks = make_sinks(list(cfg.sinks), self.out_dir, fps=fps)
            self._made_sinks = True
        else:
            self.out_dir = Path(cfg.out) if getattr(cfg, "out", None) else None
        self.stats.source = self.source.uri
        self.stats.backend = ", ".join(f"{m.role}={m.backend.name}" for m in self.models)
        self._specs = {}
        for m in self.models:
            self._specs.setdefault(_spec_key(m.manifest.preprocessing), m.manifest.preprocessing)
        self._frames_q = FrameQueue(max(1, int(cfg.queue_size)))
        self._infer_q: queue.Queue = queue.Queue(maxsize=2)
        self._post_q: queue.Queue = queue.Queue(maxsize=2)
        self._free: queue.Queue = queue.Queue()
        batch = max(1, int(cfg.batch))
        for _ in range(LIVE_POOL_SLOTS if self.source.live else POOL_SLOTS):
            self._free.put({k: np.empty((batch, 1, s.size, s.size), np.float32) for k, s in self._specs.items()})
        self._opened = True

    def _load_model(self, role: str, path: str) -> LoadedModel:
        cfg = self.config
        options = BackendOptions(device=cfg.device, precision=cfg.precision, allow_rejected=cfg.allow_rejected,
                                 threads=self.threads)
        return load_model(role, path, cfg.backend, options, allow_unchecked=cfg.allow_unchecked)

    # -- running ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run to the end of the source, max_frames, stop() or Ctrl-C; return the summary."""
        health = None
        try:
            self.open()  # a Ctrl-C while models load still raises KeyboardInterrupt (nothing runs yet)
            cfg = self.config
            if getattr(cfg, "health_file", None) or getattr(cfg, "health_port", None):
                from edge_bus.runtime.health import HealthReporter

                health = HealthReporter(cfg.health_file, cfg.health_interval_s, http_port=getattr(cfg, "health_port", None))
            stages = [("capture", self._capture), ("prepare", self._prepare), ("infer", self._infer), ("post", self._post)]
            self._done = {name: threading.Event() for name, _ in stages}
            self.stats.started = time.perf_counter()  # fps counts streaming time, not model loading
            started: set[str] = set()
            try:
                for name, stage in stages:
                    threading.Thread(target=self._guard, args=(stage, self._done[name]), name=f"edge-bus-{name}",
                                     daemon=True).start()
                    started.add(name)
                self._wait(health)
            except KeyboardInterrupt:  # only where our handler is not installed (handle_sigint=False, not main)
                for name in set(self._done) - started:
                    self._done[name].set()  # a stage that never started has nothing to finish
                self._signals += 1
                self._wait(health)
            self.stats.finish()
        finally:
            self._finish(health)
        if self._failure is not None:
            raise self._failure
        return self.summary()

    def summary(self) -> dict[str, Any]:
        data = self.stats.snapshot()
        data["roi"] = self.roi.as_list() if self.roi is not None else None
        data["capture_format"] = getattr(self.source, "capture_format", None)
        data["out_dir"] = str(self.out_dir) if self.out_dir is not None else None
        return data

    # -- signals: Ctrl-C and SIGTERM ------------------------------------------------------------------
    def _handles_signals(self) -> bool:
        return self.handle_sigint and threading.current_thread() is threading.main_thread()

    def _take_signals(self, handlers: dict[int, Any]) -> None:
        """Install `handlers` (main thread only); the handler each replaces first is kept to give back."""
        if not self._handles_signals():
            return
        for signum, handler in handlers.items():
            try:
                previous = signal.signal(signum, handler)
            except (ValueError, OSError):  # e.g. an embedded interpreter without signal support
                continue
            self._saved_handlers.setdefault(signum, previous)

    def _give_back_signals(self) -> None:
        """Restore the handlers found before open(). signal.signal() returns None for a handler set
        outside Python (from C), which cannot be set again: those signals get their default action."""
        saved, self._saved_handlers = self._saved_handlers, {}
        for signum, handler in saved.items():
            try:
                signal.signal(signum, signal.SIG_DFL if handler is None else handler)
            except (ValueError, OSError, TypeError) as exc:
                log.warning("cannot restore the handler of signal %d: %s", signum, exc)

    def _finish(self, health) -> None:
        """Close everything once: sinks, sources, models, health; delete an empty run folder; give back
        the signal handlers."""
        if self._finished:
            return
        self._finished = True
        try:
            self._shutdown(health)
        finally:
            try:
                self._discard_empty_run_folder()
                self._prune_old_runs()
            finally:
                self._give_back_signals()

    def _prune_old_runs(self) -> None:
        """keep_runs, applied when a run with frames ends: an empty run (deleted above) never pushes
        a real one out."""
        keep = getattr(self.config, "keep_runs", None)
        if self._run_folder is not None and keep is not None and self.stats.frames > 0:
            prune_run_folders(self._run_folder.parent, keep, self._run_folder)

    def _discard_empty_run_folder(self) -> None:
        """A run that processed no frame (a card without signal, restarted every few seconds) leaves no
        folder behind: it would count as a run and push real runs out of keep_runs. Never while a sink
        may still be writing in it (a write stuck past the stop), nor when anything was written (a
        frame's JSON line can land before a later sink fails and the frame is not counted)."""
        if self._run_folder is None or self.stats.frames > 0:
            return
        if (self._made_sinks and not self._sinks_closed) or holds_results(self._run_folder):
            return
        if discard_run_folder(self._run_folder):
            self.out_dir = None
        self._run_folder = None

    def _on_signal(self, signum, frame) -> None:
        # Runs in the main thread between two bytecodes, possibly inside a lock-holding call:
        # only record here (no locks, no Event.set); the main thread's wait loop acts on it.
        self._last_signal = signum
        self._signals += 1

    def _interrupted(self, count: int) -> None:
        how = STOP_SIGNALS.get(self._last_signal, "interrupted")
        if count >= 2 or self._stop.is_set():  # a second signal during a drain abandons it
            self.stats.ended_because = f"{how} twice (queue abandoned)"
            log.warning("%s again: abandoning what is still queued", how)
            self.abort()
        else:
            self.stats.ended_because = how
            log.warning("%s: finishing the queued frames (Ctrl-C again to abandon them)", how)
            self._stop.set()

    def _poll_signals(self) -> None:
        while self._signals_seen < self._signals:
            self._signals_seen += 1
            self._interrupted(self._signals_seen)

    # -- waiting ----------------------------------------------------------------------------------
    def _wait(self, health) -> None:
        """Wait in short slices until the post stage has left; report progress; bound the drain."""
        post_done = self._done["post"]
        drain_deadline: float | None = None
        abort_deadline: float | None = None
        next_report = time.monotonic() + self.progress_interval_s
        while True:
            try:
                finished = post_done.wait(max(0.001, min(WAIT_SLICE_S, next_report - time.monotonic())))
            except KeyboardInterrupt:  # a handler other than ours raised it (not in the main thread)
                self._signals += 1
                finished = False
            self._poll_signals()
            if finished:
                break
            now = time.monotonic()
            if now >= next_report:
                self._report(health)
                next_report = now + self.progress_interval_s
            if self._abort.is_set():
                abort_deadline = abort_deadline or now + self.stage_exit_s
                if now > abort_deadline:
                    log.warning("the post stage did not stop within %.1f s of an abort; leaving it", self.stage_exit_s)
                    break
            elif self._stop.is_set():
                drain_deadline = drain_deadline or now + self.drain_timeout_s
                if now > drain_deadline:
                    log.warning("drain took longer than %.0f s; abandoning what is still queued", self.drain_timeout_s)
                    self.stats.ended_because = self.stats.ended_because or "drain timed out"
                    self.abort()
        self._wait_stages(["capture", "prepare", "infer"])

    def _wait_stages(self, names: list[str]) -> None:
        """Give stages stage_exit_s to leave, then abort and give them as long again; never blocks longer."""
        while True:
            deadline = time.monotonic() + self.stage_exit_s
            while time.monotonic() < deadline and not all(self._done[n].is_set() for n in names):
                pending = next(n for n in names if not self._done[n].is_set())
                self._done[pending].wait(WAIT_SLICE_S)
                self._poll_signals()
            if all(self._done[n].is_set() for n in names):
                return
            if self._abort.is_set():
                break
            self.abort()
        stuck = [n for n in names if not self._done[n].is_set()]
        log.warning("stage(s) %s did not stop within %.1f s of an abort (blocked in a read or a backend call); "
                    "leaving them", ", ".join(stuck), self.stage_exit_s)

    def _report(self, health) -> None:
        snap = None
        if self.on_progress is not None:
            snap = self.stats.snapshot()
            self.on_progress(snap)
        if health is not None:
            health.update(self._health_stats(snap or self.stats.snapshot()))

    @staticmethod
    def _health_stats(snap: dict[str, Any]) -> dict[str, Any]:
        keys = ("fps", "frames", "drops", "bad_frames", "last_error", "backend", "source", "reconnects",
                "ended_because", "source_lost")
        return {k: snap[k] for k in keys}

    def _shutdown(self, health) -> None:
        self._stop.set()
        # The post stage writes sinks under this lock; once it is ours no write can be under way, and
        # none follows (_sinks_closed). A sink write stuck for longer is left alone, not closed under it.
        if self._sink_lock.acquire(timeout=self.stage_exit_s):
            try:
                self._sinks_closed = True
                for sink in self.sinks or []:
                    try:
                        sink.close()
                    except Exception as exc:  # one sink failing to close must not keep the others from flushing
                        log.error("sink %s failed to close: %s", sink.name, exc)
                        self._failure = self._failure or exc
            finally:
                self._sink_lock.release()
        else:
            self.abort()
            log.error("a sink write has not returned for %.1f s; the sinks are not flushed", self.stage_exit_s)
        capture_done = self._done.get("capture")
        if capture_done is not None and not capture_done.is_set() and self.source in self._owned:
            # Closing a capture device under a thread blocked in its read() can crash the driver.
            log.warning("%s: the capture thread is still blocked in read(); not closing the source", self.stats.source)
            self._owned.remove(self.source)
        self._close_owned()
        self._abort.set()  # a stage left behind (wedged read or backend call) leaves when it wakes
        if health is not None:
            health.close(self._health_stats(self.stats.snapshot()))

    def _close_owned(self) -> None:
        for thing in reversed(self._owned):
            try:
                thing.close()
            except Exception as exc:
                log.warning("closing %r failed: %s", thing, exc)
        self._owned.clear()

    def _guard(self, stage: Callable[[], None], done: threading.Event) -> None:
        try:
            stage()
        except BaseException as exc:  # a stage failed: record it, stop everything, re-raise from run()
            if self._failure is None:
                self._failure = exc
            self.stats.error(f"{type(exc).__name__}: {exc}")
            self.stats.ended_because = self.stats.ended_because or f"error: {exc}"
            if not isinstance(exc, EdgeBusError):
                log.exception("stage %s failed", threading.current_thread().name)
            self.abort()
        finally:
            done.set()

    # -- queue helpers --------------------------------------------------------------------------
    def _put(self, q: queue.Queue, item: Any) -> bool:
        while not self._abort.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue) -> Any:
        while True:
            try:
                return q.get(timeout=POLL_S)
            except queue.Empty:
                if self._abort.is_set():
                    return END

    # -- stage 1: capture -----------------------------------------------------------------------
    def _capture(self) -> None:
        src, q, cfg = self.source, self._frames_q, self.config
        max_frames = getattr(cfg, "max_frames", None)
        tolerated = int(getattr(cfg, "max_failed_reads", 5))
        no_frame_s = float(getattr(cfg, "no_frame_timeout_s", NO_FRAME_TIMEOUT_S))
        captured = 0
        failed_reads = 0  # failed reads in a row, each counted as a bad frame; reset by a good read
        failures = 0  # consecutive failed reconnects; reset by a good read
        last_good = time.monotonic()  # the last good read (or the start, or the last reopen)
        try:
            while not self._stop.is_set():
                if max_frames and captured >= max_frames and not src.live:  # live: counted as processed, in _post
                    self.stats.ended_because = self.stats.ended_because or "max_frames"
                    break
                frame, error = self._read(src)
                if frame is None:
                    if src.exhausted():
                        self.stats.ended_because = self.stats.ended_because or "end of source"
                        break
                    failed_reads += 1
                    gap = time.monotonic() - last_good  # a read that timed out counts with its whole wait
                    if failed_reads <= tolerated and gap < no_frame_s:
                        self._bad(f"{src.uri}: read failed{': ' + error if error else ''} ({failed_reads} in a row, "
                                  f"no frame for {gap:.1f} s; the source is reopened after {tolerated} or "
                                  f"{no_frame_s:g} s)")  # fmt: skip
                        continue
                    why = (f"no frame for {gap:.1f} s (no_frame_timeout_s {no_frame_s:g})" if gap >= no_frame_s
                           else f"{failed_reads} failed reads in a row (max_failed_reads {tolerated})")
                    log.warning("%s: %s", src.uri, why)
                    failed_reads = 0
                    failures = self._reconnect(failures)
                    if failures < 0:
                        break
                    last_good = time.monotonic()  # the reopened source gets a whole window
                    continue
                failed_reads = failures = 0
                last_good = time.monotonic()
                captured += 1
                if src.live:
                    self.stats.drops += q.put_newest(frame)
                elif not q.put(frame, cancel=self._abort):
                    break
        finally:
            q.put_newest(END) if src.live else q.put(END)

    def _read(self, src: Source) -> tuple[Frame | None, str | None]:
        """(frame, None), (None, None) when the source gave nothing, (None, error) when reading raised."""
        try:
            return src.read(), None
        except (SourceError, cv2.error, OSError) as exc:
            self.stats.error(f"{src.uri}: {exc}")
            return None, str(exc)

    def _reconnect(self, failures: int) -> int:
        """Reopen a lost live source with exponential backoff. Returns the new failure count, -1 = give up."""
        cfg, src = self.config, self.source
        attempts = int(getattr(cfg, "reconnect_attempts", 5))
        backoff = float(getattr(cfg, "reconnect_backoff_s", 0.5))
        while failures < attempts:
            delay = backoff * (2 ** failures)
            failures += 1
            log.warning("%s: stream lost; reconnect attempt %d/%d in %.2f s", src.uri, failures, attempts, delay)
            if self._stop.wait(delay):
                return -1
            try:
                src.reopen()
            except (SourceError, cv2.error, OSError) as exc:
                self.stats.error(f"{src.uri}: reconnect {failures}/{attempts} failed: {exc}")
                continue
            self.stats.reconnects += 1
            return failures
        self.stats.source_lost = True
        self.stats.ended_because = self.stats.ended_because or f"source lost after {attempts} reconnect attempts"
        self.stats.error(f"{src.uri}: gave up after {attempts} reconnect attempts")
        log.error("%s: source did not come back after %d attempts; ending the run", src.uri, attempts)
        return -1

    # -- stage 2: batch, ROI, validate, preprocess ------------------------------------------------
    def _batches(self):
        cfg = self.config
        batcher = Batcher(self._frames_q, int(cfg.batch), float(cfg.max_wait_ms) / 1000.0)
        pending: list[Frame] = []
        if self._roi_setting == "auto":
            while len(pending) < self.roi_frames and not batcher.ended and not self._abort.is_set():
                pending.extend(batcher.next(cancel=self._abort, poll_s=POLL_S))
            images = [f.image for f in pending if f.error is None and isinstance(f.image, np.ndarray) and f.image.size]
            try:
                self.roi = find_roi(images)
                log.info("auto roi: %s", self.roi.as_list())
            except (SourceError, PreprocessError) as exc:
                self.stats.error(str(exc))
                log.warning("%s; using the whole frame", exc)
                self.roi = None
        elif isinstance(self._roi_setting, Roi):
            self.roi = self._roi_setting
        size = max(1, int(cfg.batch))
        for i in range(0, len(pending), size):
            yield pending[i : i + size]
        while not batcher.ended and not self._abort.is_set():
            frames = batcher.next(cancel=self._abort, poll_s=POLL_S)
            if frames:
                yield frames

    def _check(self, frame: Frame) -> np.ndarray:
        """The frame's model-input region as uint8 gray; PreprocessError for a bad frame."""
        if frame.error is not None:
            raise PreprocessError(frame.error)
        image = frame.image
        what = f"frame {frame.id} of {frame.source}"
        if not isinstance(image, np.ndarray):
            raise PreprocessError(f"{what}: not an image ({type(image).__name__})")
        if self.roi is not None and image.ndim >= 2:
            if not self.roi.fits(image.shape):
                raise PreprocessError(f"{what}: {image.shape[1]}x{image.shape[0]} frame does not contain roi {self.roi.as_list()}")
            image = self.roi.crop(image)
        return to_gray(image, what=what)

    def _bad(self, reason: str) -> None:
        self.stats.add_bad(reason)
        self._bad_logged += 1
        if self._bad_logged <= 10 or self._bad_logged % 100 == 0:
            log.warning("bad frame skipped (%d so far): %s", self.stats.bad_frames, reason)

    def _prepare(self) -> None:
        live = self.source.live
        try:
            batches = self._batches()
            while True:
                slot = self._get(self._free) if live else None  # live: a free buffer first, then the newest frames
                if slot is END:
                    return
                frames = next(batches, None)
                if frames is None:
                    return
                item = self._preprocessed(frames, slot)
                if item is END:
                    return
                if item is None:  # every frame was bad
                    if slot is not None:
                        self._free.put(slot)
                    continue
                if not self._put(self._infer_q, item):
                    return
        finally:
            self._put(self._infer_q, END)

    def _valid_frames(self, frames: list[Frame]) -> tuple[list[Frame], list[np.ndarray]]:
        good, grays = [], []
        for frame in frames:
            try:
                grays.append(self._check(frame))
                good.append(frame)
            except PreprocessError as exc:
                self._bad(str(exc))
        return good, grays

    def _preprocessed(self, frames: list[Frame], slot: Any) -> Any:
        """(good frames, tensors, slot, prep_ms, roi); None when every frame was bad; END when aborted."""
        t0 = time.perf_counter()
        good, grays = self._valid_frames(frames)
        if not good:
            return None
        checked = time.perf_counter()
        if slot is None:
            slot = self._get(self._free)  # files: waiting for a free buffer is not preprocessing time
            if slot is END:
                return END
        t1 = time.perf_counter()
        tensors = {k: preprocess_batch(grays, spec, out=slot[k]) for k, spec in self._specs.items()}
        prep_ms = (checked - t0 + time.perf_counter() - t1) * 1e3
        roi = self.roi.as_list() if self.roi is not None else None
        return good, tensors, slot, prep_ms, roi

    # -- stage 3: inference ----------------------------------------------------------------------
    def _infer(self) -> None:
        try:
            while True:
                item = self._get(self._infer_q)
                if item is END:
                    return
                frames, tensors, slot, prep_ms, roi = item
                t0 = time.perf_counter()
                outputs = {}
                for m in self.models:
                    outputs[m.role] = m.backend(tensors[_spec_key(m.manifest.preprocessing)])
                infer_ms = (time.perf_counter() - t0) * 1e3
                self._free.put(slot)  # outputs are new arrays: the input buffer can be refilled
                self.stats.batches += 1
                if not self._put(self._post_q, (frames, outputs, prep_ms, infer_ms, roi)):
                    return
        finally:
            self._put(self._post_q, END)

    # -- stage 4: postprocess and sinks ------------------------------------------------------------
    def _post(self) -> None:
        by_role = {m.role: m for m in self.models}
        max_frames = getattr(self.config, "max_frames", None)
        roi_obj = None
        while True:
            item = self._get(self._post_q)
            if item is END:
                return
            frames, outputs, prep_ms, infer_ms, roi = item
            roi_obj = Roi(*roi) if roi is not None else None
            for i, frame in enumerate(frames):
                if max_frames and self.stats.frames >= max_frames:  # a live source: drain without writing
                    if not self._stop.is_set():
                        self.stats.ended_because = self.stats.ended_because or "max_frames"
                        self._stop.set()
                    break
                t0 = time.perf_counter()
                result = FrameResult(frame=frame, roi=roi)
                if "classifier" in by_role:
                    m = by_role["classifier"]
                    result.classification = classify(_output(outputs["classifier"], m)[i], m.manifest.classes)
                if "segmenter" in by_role:
                    m = by_role["segmenter"]
                    region = region_of(roi_obj, frame.image.shape)
                    result.lesion = segment(_output(outputs["segmenter"], m)[i], m.manifest.threshold, region)
                    result.segmented = True
                t1 = time.perf_counter()
                result.t_done = time.time()
                result.latency_ms = {
                    "decode": frame.decode_ms,
                    "preprocess": prep_ms,
                    "inference": infer_ms,
                    "postprocess": (t1 - t0) * 1e3,
                    "total": (t1 - frame.t_mono) * 1e3,
                }
                with self._sink_lock:
                    if self._sinks_closed:
                        return
                    for sink in self.sinks:
                        sink.write(result)
                    self.stats.add_frame(result.latency_ms)
                if max_frames and self.stats.frames >= max_frames and not self._stop.is_set():
                    self.stats.ended_because = self.stats.ended_because or "max_frames"
                    self._stop.set()


def _output(outputs: dict[str, np.ndarray], model: LoadedModel) -> np.ndarray:
    name = model.manifest.output.name
    if name in outputs:
        return outputs[name]
    return next(iter(outputs.values()))


def run_pipeline(config: Any, **kwargs: Any) -> dict[str, Any]:
    """Open everything named by `config`, run, return the summary."""
    return Pipeline(config, **kwargs).run()


def write_summary(summary: dict[str, Any], out_dir: str | Path | None) -> Path | None:
    """summary.json in `out_dir`, written atomically (a reader never sees half of it)."""
    if out_dir is None:
        return None
    return write_json_atomic(Path(out_dir) / SUMMARY_FILE, summary)
