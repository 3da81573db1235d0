"""Frame sources opened by URI, as jetson-inference does (see its docs/aux-streaming.md).

    clip.mp4, file://clip.mp4          video file (OpenCV FFMPEG backend); loses nothing
    image.png, folder/, "dir/*.png"     image file, folder or glob, in sorted order; loses nothing
    v4l2:///dev/video0                  V4L2 capture device (options: width, height, fps, pixel_format)
    csi://0                             Jetson CSI camera through nvarguscamerasrc (system OpenCV)
    gst://<pipeline> or "... ! appsink" GStreamer pipeline ending in an appsink (system OpenCV)
    rtsp://host:port/path, udp://ip:port network streams (OpenCV FFMPEG backend)
    synthetic://?fps=30&size=256x256    phantom frames at a given rate (frames=N ends after N)

`open_source(uri, **options) -> Source`. A source's `read()` returns the next `Frame`, or None at the
end (files) or when a read fails (live sources; the pipeline counts failed reads and then calls
`reopen()` with backoff). Every frame carries an id, its source name (the file name for folders) and
its arrival time: for a live source the moment the frame arrived (after waiting for the camera), so
`decode_ms` and the pipeline's total latency never include that wait. (For OpenCV's FFMPEG network
streams decoding happens while waiting, in `grab()`, so there `decode_ms` is the colour conversion.)

A GStreamer pipeline is live unless its first element reads a file (filesrc, multifilesrc, or a
uridecodebin/playbin with a file:// uri): such a pipeline loses no frame and ends the run at its end.
Reading a capture card through GStreamer (hardware conversion on a Jetson) is such a pipeline, e.g.
    v4l2src device=/dev/video0 ! image/jpeg,width=1920,height=1080,framerate=30/1 ! jpegdec !
    videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1
(frame rates are fractions: 60000/1001 for 59.94, see `gst_framerate`).

A V4L2 device is asked for width, height, fps and pixel_format; what the card really gives is read
back (`source.capture_format`: asked, got, mismatch) and a mismatch is logged as a warning.
"""

from __future__ import annotations

import glob as globlib
import logging
import re
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from edge_bus.errors import SourceError
from edge_bus.runtime.frames import Frame

log = logging.getLogger(__name__)

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".ts", ".wmv"}
NETWORK_SCHEMES = ("rtsp", "rtsps", "udp", "rtp", "rtmp", "http", "https", "tcp", "srt")


class Source:
    """Base class: subclasses implement `_open`, `_read_image` and `_release`."""

    live = False  # live sources drop old frames when inference falls behind and are reconnected
    capture_format: dict[str, Any] | None = None  # V4L2: {"asked", "got", "mismatch"} after opening

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.name = uri
        self._next_id = 0

    # -- what the pipeline calls ------------------------------------------------------------
    def read(self) -> Frame | None:
        if not self._wait_for_frame():
            return None
        arrived, arrived_wall = time.perf_counter(), time.time()  # latencies count from here
        got = self._read_image()
        if got is None:
            return None
        image, name, error = got
        decode_ms = (time.perf_counter() - arrived) * 1e3
        frame = Frame(id=self._next_id, image=image, source=name, t_capture=arrived_wall, t_mono=arrived,
                      decode_ms=decode_ms, error=error)  # fmt: skip
        self._next_id += 1
        return frame

    def exhausted(self) -> bool:
        """True when read() returned None because the source has really ended (not a lost stream)."""
        return not self.live

    def reopen(self) -> None:
        """Release and open again (raises SourceError when it cannot)."""
        self._release()
        self._open()

    def close(self) -> None:
        self._release()

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    # -- what subclasses implement ------------------------------------------------------------
    def _open(self) -> None:  # pragma: no cover - trivial
        pass

    def _wait_for_frame(self) -> bool:
        """Block until a frame has arrived (live sources); False when none will. Not decode time."""
        return True

    def _read_image(self) -> tuple[Any, str, str | None] | None:  # (image, source name, error)
        raise NotImplementedError

    def _release(self) -> None:  # pragma: no cover - trivial
        pass


# ----------------------------------------------------------------------------------------------
# Files: images, folders, globs, video files
# ----------------------------------------------------------------------------------------------
class ImageFilesSource(Source):
    """An image file, a folder of images or a glob, read in sorted order; nothing is dropped."""

    def __init__(self, uri: str, paths: list[Path]) -> None:
        super().__init__(uri)
        self.paths = paths
        self._index = 0

    def _read_image(self):
        if self._index >= len(self.paths):
            return None
        path = self.paths[self._index]
        self._index += 1
        data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else np.empty(0, np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if image is None:
            return None, path.name, f"{path}: not a readable image (corrupt, empty or unsupported format)"
        return image, path.name, None

    def reopen(self) -> None:
        self._index = 0


class _OpenCVCaptureMixin:
    """read/release of a cv2.VideoCapture held in `self._cap` (video files and capture devices)."""

    _cap: Any
    name: str

    def _read_image(self):
        if self._cap is None:
            return None
        ok, image = self._decode()
        if not ok:
            return None
        return image, self.name, None

    def _decode(self) -> tuple[bool, Any]:
        return self._cap.read()

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class VideoFileSource(_OpenCVCaptureMixin, Source):
    """A video file decoded with OpenCV's FFMPEG backend; nothing is dropped."""

    def __init__(self, uri: str, path: Path) -> None:
        super().__init__(uri)
        self.path = path
        self.name = path.name
        self._cap: cv2.VideoCapture | None = None
        self._open()

    @property
    def fps(self) -> float:
        return float(self._cap.get(cv2.CAP_PROP_FPS)) if self._cap is not None else 0.0

    @property
    def frame_count(self) -> int:
        return int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self._cap is not None else 0

    def _open(self) -> None:
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(
                f"{self.path}: OpenCV cannot open this video (corrupt, or a codec its FFMPEG backend lacks); "
                "re-encode it, e.g. `ffmpeg -i in -c:v libx264 out.mp4`"
            )
        self._cap = cap



def _paths_source(uri: str, target: str, options: dict[str, Any]) -> Source:
    if any(ch in target for ch in "*?["):
        paths = sorted(Path(p) for p in globlib.glob(target, recursive=True) if Path(p).suffix.lower() in IMAGE_EXTS)
        if not paths:
            raise SourceError(f"{uri}: the glob matches no image files ({', '.join(sorted(IMAGE_EXTS))})")
        return ImageFilesSource(uri, paths)
    path = Path(target).expanduser()
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        if not paths:
            raise SourceError(f"{path}: folder holds no image files ({', '.join(sorted(IMAGE_EXTS))}); for a video pass the file itself")
        return ImageFilesSource(uri, paths)
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder (source URI '{uri}')")
    if path.suffix.lower() in IMAGE_EXTS:
        return ImageFilesSource(uri, [path])
    return VideoFileSource(uri, path)


# ----------------------------------------------------------------------------------------------
# Live captures: V4L2, GStreamer, network streams
# ----------------------------------------------------------------------------------------------
def gstreamer_available() -> bool:
    """Whether this OpenCV was built with GStreamer (pip wheels are not; JetPack's system OpenCV is)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


def _video_capture(target: str | int, api: int, params: list[int]) -> Any:
    """cv2.VideoCapture (tests replace this with a fake camera)."""
    return cv2.VideoCapture(target, api, params) if params else cv2.VideoCapture(target, api)


class CaptureSource(_OpenCVCaptureMixin, Source):
    """A cv2.VideoCapture stream: live ones keep the newest frames and are reconnected when lost."""

    def __init__(self, uri: str, target: str | int, api: int, *, props: list[tuple[int, float]] = (),
                 params: list[int] = (), hint: str = "", live: bool = True,
                 asked: dict[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__(uri)
        self.target = target
        self.api = api
        self.props = list(props)
        self.params = list(params)
        self.hint = hint
        self.live = live
        self.asked = asked  # V4L2: the capture format asked for, read back after opening
        self._cap: Any = None
        self._open()

    def _open(self) -> None:
        cap = _video_capture(self.target, self.api, self.params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.uri}: cannot open this capture source{'; ' + self.hint if self.hint else ''}")
        for prop, value in self.props:
            cap.set(prop, value)
        if self.asked is not None:
            self.capture_format = check_capture_format(self.uri, self.asked, read_capture_format(cap))
        self._cap = cap

    def _wait_for_frame(self) -> bool:
        return self._cap is not None and bool(self._cap.grab())

    def _decode(self) -> tuple[bool, Any]:
        return self._cap.retrieve()  # the frame grab() waited for


def fourcc_text(code: float) -> str | None:
    """OpenCV's CAP_PROP_FOURCC number as text ("MJPG"); None when the driver gives no printable code."""
    n = int(code)
    text = "".join(chr((n >> (8 * i)) & 0xFF) for i in range(4))
    return text if n > 0 and text.isprintable() else None


def read_capture_format(cap: Any) -> dict[str, Any]:
    """What the device gives after the format was set (0 / None: the driver does not say)."""
    return {
        "pixel_format": fourcc_text(cap.get(cv2.CAP_PROP_FOURCC)),
        "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        "fps": round(float(cap.get(cv2.CAP_PROP_FPS)), 3),
    }


def _differs(key: str, asked: Any, got: Any) -> bool:
    if not got:  # unknown: nothing to compare
        return False
    if key == "fps":
        return abs(float(got) - float(asked)) > 0.01 * float(asked)
    if key == "pixel_format":
        return str(got).strip().upper() != str(asked).strip().upper()
    return int(got) != int(asked)


def describe_format(f: dict[str, Any]) -> str:
    """A capture format as text: 'MJPG 1920x1080 @30 fps' (the one place a format is formatted)."""
    size = f"{f.get('width') or '?'}x{f.get('height') or '?'}" if ("width" in f or "height" in f) else ""
    fps = f"@{f['fps']:g} fps" if f.get("fps") else ""
    return " ".join(p for p in (f.get("pixel_format") or "", size, fps) if p) or "the default"


def describe_capture(capture: dict[str, Any]) -> str:
    """A `capture_format` record as text: 'gives MJPG 1920x1080 @30 fps', plus '; asked width 1920, ...'
    naming what was asked of each differing key (`edge-bus info`, the run summary)."""
    text = f"gives {describe_format(capture['got'])}"
    if capture.get("mismatch"):
        asked = capture["asked"]
        shown = [f"{k} {asked[k]:g}" if isinstance(asked[k], float) else f"{k} {asked[k]}" for k in capture["mismatch"]]
        text += "; asked " + ", ".join(shown)
    return text


def check_capture_format(uri: str, asked: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    """{"asked", "got", "mismatch": [keys]}; a mismatch is logged as a warning naming both."""
    mismatch = [key for key, value in asked.items() if _differs(key, value, got.get(key))]
    if mismatch:
        shown = {k: got.get(k) for k in asked}
        device = uri.split("://", 1)[-1] or "/dev/video0"
        log.warning("%s: asked for %s, the device gives %s (%s differ); list what it supports with "
                    "`v4l2-ctl -d %s --list-formats-ext`", uri, describe_format(asked), describe_format(shown),
                    ", ".join(mismatch), device)  # fmt: skip
    return {"asked": dict(asked), "got": dict(got), "mismatch": mismatch}


def _v4l2_source(uri: str, target: str, options: dict[str, Any]) -> Source:
    device = target or "/dev/video0"
    if not Path(device).exists():
        raise SourceError(
            f"{uri}: no such capture device {device}; list devices with `v4l2-ctl --list-devices` "
            "and check the capture card is plugged in (and the udev rule gave you access)"
        )
    props: list[tuple[int, float]] = []
    asked: dict[str, Any] = {}
    pixel_format = options.get("pixel_format")
    if pixel_format:
        if len(pixel_format) != 4:
            raise SourceError(f"{uri}: pixel_format must be a four-character code such as MJPG or YUYV, got '{pixel_format}'")
        asked["pixel_format"] = pixel_format.upper()
        props.append((cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*pixel_format.upper())))
    if options.get("width"):
        asked["width"] = int(options["width"])
        props.append((cv2.CAP_PROP_FRAME_WIDTH, int(options["width"])))
    if options.get("height"):
        asked["height"] = int(options["height"])
        props.append((cv2.CAP_PROP_FRAME_HEIGHT, int(options["height"])))
    if options.get("fps"):
        asked["fps"] = float(options["fps"])
        props.append((cv2.CAP_PROP_FPS, float(options["fps"])))
    props.append((cv2.CAP_PROP_BUFFERSIZE, 1))  # keep the driver's queue short: newest frame wins
    return CaptureSource(uri, device, cv2.CAP_V4L2, props=props, asked=asked,
                         hint="check the device is free (`fuser " + device + "`) and supports the size/format asked")


def _gst_source(uri: str, pipeline: str, options: dict[str, Any]) -> Source:
    if "appsink" not in pipeline:
        raise SourceError(f"{uri}: a GStreamer source must end in an appsink, e.g. '... ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1'")
    if not gstreamer_available():
        raise SourceError(
            f"{uri}: this OpenCV ({cv2.__version__}) was built without GStreamer (pip wheels are); on JetPack "
            "use the system OpenCV (`sudo apt install python3-opencv`, then `pip uninstall opencv-python-headless` "
            "in this environment or create it with --system-site-packages), or read the card with v4l2:///dev/videoN"
        )
    live = gst_pipeline_is_live(pipeline)
    if not live and re.search(r"\bappsink\b[^!]*\bdrop=(true|1)\b", pipeline):
        log.warning("%s: reads a file, but `appsink drop=true` throws frames away; remove drop=true to keep every frame", uri)
    return CaptureSource(uri, pipeline, cv2.CAP_GSTREAMER, live=live,
                         hint="test the pipeline with `gst-launch-1.0` (replace appsink by fakesink)")


FILE_ELEMENTS = ("filesrc", "multifilesrc", "splitfilesrc")
URI_ELEMENTS = ("uridecodebin", "uridecodebin3", "urisourcebin", "playbin", "playbin3")


def gst_pipeline_is_live(pipeline: str) -> bool:
    """False when the pipeline's first element reads a file (its frames must all be processed)."""
    first = pipeline.split("!", 1)[0].strip()
    element = first.split(None, 1)[0] if first else ""
    if element in FILE_ELEMENTS:
        return False
    return not (element in URI_ELEMENTS and re.search(r"\buri=[\"']?file://", first))


def gst_framerate(fps: float) -> str:
    """A frame rate as GStreamer caps want it: 30 -> 30/1, 59.94 -> 60000/1001, 12.5 -> 25/2."""
    ntsc = round(fps * 1.001)  # 29.97, 59.94, 23.976 are n * 1000 / 1001
    if abs(fps - round(fps)) > 0.005 and abs(fps - ntsc * 1000 / 1001) < 0.005:
        return f"{ntsc * 1000}/1001"
    rate = Fraction(fps).limit_denominator(1000)
    return f"{rate.numerator}/{rate.denominator}"


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: float = 30) -> str:
    """The usual JetPack pipeline for a CSI camera, ending in an appsink that keeps the newest frame."""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM),width={width},height={height},"
        f"framerate={gst_framerate(fps)} ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
    )


def _csi_source(uri: str, target: str, options: dict[str, Any]) -> Source:
    sensor = target.strip("/") or "0"
    if not sensor.isdigit():
        raise SourceError(f"{uri}: csi:// takes a sensor number, e.g. csi://0")
    pipeline = csi_pipeline(int(sensor), int(options.get("width") or 1280), int(options.get("height") or 720),
                            float(options.get("fps") or 30))
    return _gst_source(uri, pipeline, options)


def _network_source(uri: str, target: str, options: dict[str, Any]) -> Source:
    timeout_ms = int(float(options.get("timeout_s", 5.0)) * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
    return CaptureSource(uri, uri, cv2.CAP_FFMPEG, params=params,
                         hint="check the address and that the sender is running (try `ffplay " + uri + "`)")


# ----------------------------------------------------------------------------------------------
# Synthetic phantoms at a given rate
# ----------------------------------------------------------------------------------------------
class SyntheticSource(Source):
    """Phantom frames paced at `fps`, a simulated camera (live: the newest frame is kept, drops are
    counted), or unpaced (`fps=0`), read like a file: each frame is made when the pipeline asks for
    it, so nothing is dropped. An unpaced live source would spin a core and drop nearly every frame."""

    def __init__(self, uri: str, *, fps: float = 30.0, size: tuple[int, int] = (256, 256), frames: int | None = None,
                 seed: int = 0, pool: int = 8, lesion: bool = True) -> None:
        super().__init__(uri)
        self.fps = fps
        self.live = fps > 0
        self.size = size
        self.frames = frames
        self._pool = self._make_pool(seed, pool, lesion)
        self._start: float | None = None

    def _make_pool(self, seed: int, n: int, lesion: bool) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        try:
            from edge_bus.data.synthetic import phantom_frame
        except ImportError:  # the phantom generator is optional at runtime; fall back to speckle
            phantom_frame = None
        pool = []
        for i in range(max(1, n)):
            if phantom_frame is not None:
                image, _ = phantom_frame(rng, size=self.size, lesion=lesion and i % 4 != 3)
            else:
                image = cv2.GaussianBlur(rng.rayleigh(60.0, self.size).astype(np.float32), (0, 0), 1.0)
                image = np.clip(image, 0, 255).astype(np.uint8)
            pool.append(np.ascontiguousarray(image))
        return pool

    def exhausted(self) -> bool:
        return self.frames is not None and self._next_id >= self.frames

    def _wait_for_frame(self) -> bool:
        i = self._next_id
        if self.frames is not None and i >= self.frames:
            return False
        if self.fps > 0:
            now = time.perf_counter()
            if self._start is None:
                self._start = now
            due = self._start + i / self.fps
            if due > now:
                time.sleep(due - now)  # pacing a simulated camera, not synchronization
        return True

    def _read_image(self):
        return self._pool[self._next_id % len(self._pool)], self.name, None


def _parse_size(text: str, uri: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SourceError(f"{uri}: size must be WIDTHxHEIGHT, e.g. 256x256, got '{text}'") from None
    if w < 8 or h < 8:
        raise SourceError(f"{uri}: size {text} is too small (at least 8x8)")
    return h, w


def _synthetic_source(uri: str, target: str, options: dict[str, Any]) -> Source:
    query = {k: v[-1] for k, v in parse_qs(urlsplit(uri).query).items()}
    try:
        fps = float(query.get("fps", options.get("fps") or 30))
        frames = int(query["frames"]) if "frames" in query else None
        seed = int(query.get("seed", 0))
        lesion = query.get("lesion", "1") not in ("0", "false", "no")
    except ValueError as exc:
        raise SourceError(f"{uri}: bad synthetic:// parameter ({exc}); example: synthetic://?fps=30&size=256x256&frames=100") from None
    size = _parse_size(query["size"], uri) if "size" in query else (
        (int(options["height"]), int(options["width"])) if options.get("width") and options.get("height") else (256, 256))
    return SyntheticSource(uri, fps=fps, size=size, frames=frames, seed=seed, lesion=lesion)


# ----------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------
Opener = Callable[[str, str, dict[str, Any]], Source]
SCHEMES: dict[str, Opener] = {
    "file": _paths_source,
    "v4l2": _v4l2_source,
    "csi": _csi_source,
    "gst": _gst_source,
    "synthetic": _synthetic_source,
    **{scheme: _network_source for scheme in NETWORK_SCHEMES},
}


def register_scheme(scheme: str, opener: Opener) -> None:
    """Add a source type: opener(uri, target, options) -> Source."""
    SCHEMES[scheme] = opener


def open_source(uri: str, **options: Any) -> Source:
    """Open a frame source by URI (see the module docstring). Options: width, height, fps, pixel_format."""
    if not isinstance(uri, str) or not uri.strip():
        raise SourceError("empty source URI; pass a file, folder, glob, v4l2:///dev/video0, rtsp://..., synthetic://...")
    uri = uri.strip()
    if "appsink" in uri and not uri.startswith("gst://"):
        return _gst_source(uri, uri, options)
    if "://" not in uri:
        return _paths_source(uri, uri, options)
    scheme, rest = uri.split("://", 1)
    scheme = scheme.lower()
    opener = SCHEMES.get(scheme)
    if opener is None:
        raise SourceError(
            f"{uri}: unknown source scheme '{scheme}://'; known: {', '.join(s + '://' for s in sorted(SCHEMES))}, "
            "or a plain file/folder/glob path"
        )
    if scheme == "file":
        rest = rest.split("?", 1)[0]
    elif scheme == "synthetic":
        rest = ""
    return opener(uri, rest, options)
