"""Where results go: JSON Lines, an overlay video, mask PNGs, a window.

A sink has `write(result)` and `close()`; `close()` flushes everything (it runs on Ctrl-C too).
`make_sinks(names, out_dir)` builds them in a fixed order (masks first, so the JSONL record can
name the mask file).

The results folder. `results_folder(out, per_run=True)` makes a fresh
`out/<UTC start YYYYmmddTHHMMSSZ>-<pid>/` for every run and points `out/latest` at it: a restarted
service never wipes what an earlier run wrote. With keep_runs N, a run that processed frames
deletes the oldest run folders when it ends, so that N are left, itself included
(`prune_run_folders`). Without per-run folders the results go to `out/` itself, and
`refuse_overwrite(out, names)` stops a run that would overwrite an earlier run's results.

Retention counts runs that processed frames only. A run that ends without one (a card plugged in
but no signal: exit 3, restarted by systemd every few seconds) removes its own folder
(`discard_run_folder`), and a folder whose summary.json says `frames: 0`, or that holds no
results at all, is never counted (nor deleted while it may belong to a run still starting).
Runs are ordered by a sequence number, not by the time in their names (a cart without an RTC or
NTP can start with its clock reset): `out/.run-counter` holds the last one given out and every run
folder its own in `.run-seq`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from edge_bus.errors import ConfigError
from edge_bus.fileio import write_text_atomic
from edge_bus.runtime.frames import FrameResult
from edge_bus.runtime.postprocess import full_frame_mask

log = logging.getLogger(__name__)

ORDER = ("masks", "jsonl", "overlay", "window")


class Sink:
    name = "sink"

    def write(self, result: FrameResult) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class JsonlSink(Sink):
    """One JSON object per processed frame; flushed at least every `flush_s` seconds and on close."""

    name = "jsonl"

    def __init__(self, path: str | Path, flush_s: float = 1.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", encoding="utf-8")
        self._flush_s = flush_s
        self._last_flush = time.monotonic()
        self.written = 0

    def write(self, result: FrameResult) -> None:
        self._file.write(json.dumps(result.record(), separators=(",", ":")) + "\n")
        self.written += 1
        now = time.monotonic()
        if now - self._last_flush >= self._flush_s:
            self._file.flush()
            self._last_flush = now

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


class MaskSink(Sink):
    """A full-frame PNG mask (0/255) per segmented frame: masks/<frame id>.png."""

    name = "masks"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, result: FrameResult) -> None:
        if not result.segmented:
            return
        name = mask_name(result.frame.id)
        if not cv2.imwrite(str(self.folder / name), full_frame_mask(result.lesion, result.frame.shape)):
            raise OSError(f"{self.folder / name}: cannot write the mask PNG")
        result.mask_file = f"{self.folder.name}/{name}"


def draw_overlay(result: FrameResult) -> np.ndarray:
    """The frame in BGR with the ROI box, the lesion contour and the label text."""
    image = result.frame.image
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / 65535.0) if image.dtype == np.uint16 else image.astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        canvas = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    else:
        canvas = image.copy()
    if result.roi is not None:
        x, y, w, h = result.roi
        cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), (255, 160, 0), 1)
    if result.lesion is not None:
        cv2.drawContours(canvas, [result.lesion.contour], -1, (0, 255, 0), 2)
    text = f"#{result.frame.id}"
    if result.classification is not None:
        c = result.classification
        text += f" {c.label} {c.probs[c.label]:.2f}"
    if result.lesion is not None:
        text += f" lesion {result.lesion.area_px}px"
    scale = max(0.5, canvas.shape[1] / 1200)
    cv2.putText(canvas, text, (10, int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(canvas, text, (10, int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 255), 1, cv2.LINE_AA)
    return canvas


class OverlayVideoSink(Sink):
    """overlay.mp4 (mp4v) at the source's frame size; frames of another size are resized to it."""

    name = "overlay"

    def __init__(self, path: str | Path, fps: float = 25.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps if fps and fps > 0 else 25.0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.written = 0

    def write(self, result: FrameResult) -> None:
        canvas = draw_overlay(result)
        size = (canvas.shape[1], canvas.shape[0])
        if self._writer is None:
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
            if not self._writer.isOpened():
                raise OSError(f"{self.path}: cannot open an mp4v video writer; check the folder is writable")
            self._size = size
        if size != self._size:
            canvas = cv2.resize(canvas, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(canvas)
        self.written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class WindowSink(Sink):
    """cv2.imshow of the overlay; disables itself with a warning when there is no display."""

    name = "window"

    def __init__(self, title: str = "edge-bus") -> None:
        self.title = title
        self.enabled = display_available()
        if not self.enabled:
            log.warning("window sink skipped: no display (DISPLAY/WAYLAND_DISPLAY unset)")

    def write(self, result: FrameResult) -> None:
        if not self.enabled:
            return
        try:
            cv2.imshow(self.title, draw_overlay(result))
            cv2.waitKey(1)
        except cv2.error as exc:  # opencv-python-headless has no GUI
            self.enabled = False
            log.warning("window sink disabled: this OpenCV cannot open windows (%s); install opencv-python",
                        str(exc).splitlines()[0])

    def close(self) -> None:
        if self.enabled:
            try:
                cv2.destroyWindow(self.title)
            except cv2.error:
                pass


# -- the results folder ---------------------------------------------------------------------------
RUN_FOLDER_RE = re.compile(r"^\d{8}T\d{6}Z-\d+(-\d+)?$")  # 20250102T030405Z-1234, -1234-2 on a name clash
LATEST = "latest"
RESULT_FILES = {"jsonl": "results.jsonl", "overlay": "overlay.mp4"}  # sink -> the file it writes in the folder
MASKS_DIR = "masks"  # the masks sink's folder: masks/<frame id>.png
SUMMARY_FILE = "summary.json"
MASK_RE = re.compile(r"^\d{6,}\.png$")  # what mask_name() gives
RUN_COUNTER = ".run-counter"  # in out/: the last run sequence number given out
RUN_SEQ = ".run-seq"  # in each run folder: its sequence number


def mask_name(frame_id: int) -> str:
    """The file name of a frame's mask in masks/ (MASK_RE matches it)."""
    return f"{frame_id:06d}.png"


def run_folder_name(started: datetime, pid: int) -> str:
    return f"{started.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{pid}"


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _locked(out: Path):
    """An exclusive lock on the folder `out` (two runs starting at once get different numbers)."""
    try:
        import fcntl

        fd = os.open(out, os.O_RDONLY)
    except (ImportError, OSError):  # not Linux: unlocked
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a filesystem without flock: unlocked
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def next_run_seq(out: Path) -> int:
    """The next run sequence number: one above out/.run-counter and above every run folder's own
    (a deleted or corrupt counter file never makes a new run sort before the old ones)."""
    with _locked(out):
        seen = [_read_int(out / RUN_COUNTER) or 0]
        seen += [run_seq(p) or 0 for p in _run_folder_paths(out)]
        seq = max(seen) + 1
        write_text_atomic(out / RUN_COUNTER, f"{seq}\n")
    return seq


def run_seq(folder: Path) -> int | None:
    """A run folder's sequence number; None for one made before run folders had one."""
    return _read_int(folder / RUN_SEQ)


def make_run_folder(out: Path, *, started: datetime | None = None, pid: int | None = None) -> Path:
    """A new out/<UTC start>-<pid>[-n]/ (a suffix only when a restart reuses the second and pid) with
    the next run sequence number in it."""
    name = run_folder_name(started or datetime.now(timezone.utc), os.getpid() if pid is None else pid)
    out.mkdir(parents=True, exist_ok=True)
    seq = next_run_seq(out)
    for attempt in range(1000):
        folder = out / (name if attempt == 0 else f"{name}-{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        (folder / RUN_SEQ).write_text(f"{seq}\n", encoding="utf-8")
        return folder
    raise ConfigError(f"{out}: cannot make a new run folder {name}: 1000 of that name exist; clean up the folder")


def point_latest_at(folder: Path | None, out: Path | None = None) -> None:
    """out/latest -> the run folder (relative, replaced atomically); None removes the link.

    Only a missing `latest` or a symbolic link is replaced: a file or folder of that name that
    someone put there is left alone (with a warning). A filesystem without links gets none."""
    out = folder.parent if folder is not None else out
    link = out / LATEST
    if os.path.lexists(link) and not link.is_symlink():
        log.warning("%s: not a symbolic link (a file or folder someone made); not pointing it at the run folder; "
                    "rename it to get the %s link back", link, LATEST)  # fmt: skip
        return
    if folder is None:
        link.unlink(missing_ok=True)
        return
    tmp = out / f".{LATEST}.{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(folder.name, tmp)
        os.replace(tmp, link)
    except OSError as exc:
        log.warning("%s: cannot point %s at the new run folder (%s); find the newest run by its name", link, LATEST, exc)


def _run_folder_paths(out: Path) -> list[Path]:
    if not out.is_dir():
        return []
    return [p for p in out.iterdir() if RUN_FOLDER_RE.match(p.name) and p.is_dir() and not p.is_symlink()]


def run_folders(out: Path) -> list[Path]:
    """The run folders in `out`, oldest first: by sequence number (folders without one, from before
    there were any, first, by the time in their name and their modification time)."""

    def key(p: Path) -> tuple[int, str, float]:
        seq = run_seq(p)
        return (seq if seq is not None else -1, p.name[:16], p.stat().st_mtime)

    return sorted(_run_folder_paths(out), key=key)


def run_frames(folder: Path) -> int | None:
    """Frames a run processed: its summary.json's `frames`; without a summary (a run still under
    way, or killed) 1 when it holds results and 0 when not; None when the summary cannot be read."""
    summary = folder / SUMMARY_FILE
    if summary.is_file():
        try:
            frames = json.loads(summary.read_text(encoding="utf-8")).get("frames")
        except (OSError, ValueError, AttributeError):
            return None
        return frames if isinstance(frames, int) and not isinstance(frames, bool) else None
    return 1 if holds_results(folder) else 0


def holds_results(folder: Path) -> bool:
    """A non-empty results file or a mask in `folder` (an empty results.jsonl is opened at start)."""
    for name in RESULT_FILES.values():
        try:
            if (folder / name).stat().st_size > 0:
                return True
        except OSError:
            continue
    masks = folder / MASKS_DIR
    return masks.is_dir() and any(MASK_RE.match(p.name) for p in masks.iterdir())


def prune_run_folders(out: Path, keep: int, current: Path) -> list[Path]:
    """Delete the oldest run folders so that `keep` are left, the current one counted and never deleted.

    Only runs with frames count (an unreadable summary counts too: never delete what cannot be
    judged as empty). A folder whose summary says it ended with no frame is deleted; one with no
    summary and no results is left alone uncounted (it may belong to a run that is still starting)."""
    ordered = run_folders(out)
    counted: list[Path] = []
    doomed: list[Path] = []
    for folder in ordered:
        if folder == current:
            continue
        frames = run_frames(folder)
        if frames is None or frames > 0:
            counted.append(folder)
        elif (folder / SUMMARY_FILE).is_file():
            doomed.append(folder)  # a finished run with nothing in it
    doomed += counted[: max(0, len(counted) - (keep - 1))]
    doomed = [p for p in ordered if p in doomed]  # oldest first
    for folder in doomed:
        try:
            shutil.rmtree(folder)
            log.info("deleted old run folder %s (keep_runs %d)", folder, keep)
        except OSError as exc:
            log.warning("cannot delete old run folder %s: %s", folder, exc)
    return doomed


def discard_run_folder(folder: Path) -> bool:
    """Delete the folder of a run that processed no frame and point out/latest back at the newest
    run left (or remove it). True when the folder is gone."""
    out = folder.parent
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot delete the empty run folder %s: %s", folder, exc)
        return False
    link = out / LATEST
    if link.is_symlink() and os.readlink(link) == folder.name:
        left = [p for p in run_folders(out) if run_frames(p) != 0]
        point_latest_at(left[-1] if left else None, out)
    log.info("no frame was processed: deleted the empty run folder %s", folder)
    return True


def earlier_results(out: Path, names: list[str]) -> list[Path]:
    """Files in `out` that a run writing sinks `names` (and summary.json) would overwrite."""
    found = [out / RESULT_FILES[n] for n in names if n in RESULT_FILES and (out / RESULT_FILES[n]).exists()]
    if (out / SUMMARY_FILE).exists():
        found.append(out / SUMMARY_FILE)
    masks = out / MASKS_DIR
    if "masks" in names and masks.is_dir() and any(MASK_RE.match(p.name) for p in masks.iterdir()):
        found.append(masks)
    return found


def refuse_overwrite(out: str | Path | None, names: list[str], *, overwrite: bool) -> None:
    """ConfigError when `out` holds an earlier run's results and `overwrite` is off."""
    if out is None or overwrite:
        return
    found = earlier_results(Path(out), names)
    if found:
        raise ConfigError(
            f"{found[0]}: results of an earlier run are in the way; pass --overwrite to replace them, "
            "--per-run-folder (out_per_run: true) to keep every run, or another --out"
        )


def remove_earlier_results(out: Path, names: list[str]) -> None:
    """--overwrite: delete what an earlier run wrote, so that no stale mask outlives its run."""
    for path in earlier_results(out, names):
        if path.is_dir():
            for mask in path.iterdir():
                if MASK_RE.match(mask.name):
                    mask.unlink()
        else:
            path.unlink()


def results_folder(out: str | Path | None, names: list[str], *, per_run: bool = False,
                   overwrite: bool = True) -> Path | None:
    """Where this run writes: a new run folder (per_run), else `out` (earlier results refused or removed)."""
    if out is None:
        return None
    out = Path(out)
    if not per_run:
        refuse_overwrite(out, names, overwrite=overwrite)
        if out.is_dir():
            remove_earlier_results(out, names)
        return out
    folder = make_run_folder(out)
    point_latest_at(folder)
    return folder


def make_sinks(names: list[str], out_dir: str | Path | None, *, fps: float = 25.0) -> list[Sink]:
    unknown = sorted(set(names) - set(ORDER))
    if unknown:
        raise ConfigError(f"unknown sink(s) {unknown}; choose from {', '.join(ORDER)}")
    needs_out = [n for n in names if n != "window"]
    if needs_out and out_dir is None:
        raise ConfigError(f"sinks {', '.join(needs_out)} write files: give --out DIR")
    out = Path(out_dir) if out_dir is not None else None
    sinks: list[Sink] = []
    for name in ORDER:
        if name not in names:
            continue
        if name == "masks":
            sinks.append(MaskSink(out / MASKS_DIR))
        elif name == "jsonl":
            sinks.append(JsonlSink(out / RESULT_FILES["jsonl"]))
        elif name == "overlay":
            sinks.append(OverlayVideoSink(out / RESULT_FILES["overlay"], fps=fps))
        else:
            sinks.append(WindowSink())
    return sinks
