"""THE preprocessing: one implementation used by training, export checks and the runtime.

NumPy/OpenCV only. A frame of any common layout becomes a float32 tensor (1, H, W):

    to_gray      -> uint8 (H0, W0)          grayscale, whatever came in
    resize_gray  -> uint8 (size, size)      INTER_AREA when shrinking, INTER_LINEAR when growing
    normalize    -> float32 (1, size, size) (x / 255 - mean) / std

Training caches the uint8 output of `resize_gray` (see pack.py) and calls `normalize` on it, so a
cached sample and a live frame go through literally the same arithmetic. `PreprocessSpec` is
written into checkpoints and bundle manifests and read back from them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np

from edge_bus.errors import PreprocessError

DEFAULT_SIZE = 256
# Mean and std of BUSI pixel intensities are about 0.33 and 0.22; round values keep the manifest
# readable and are close enough for networks trained from scratch.
DEFAULT_MEAN = 0.33
DEFAULT_STD = 0.22


@dataclass(frozen=True)
class PreprocessSpec:
    size: int = DEFAULT_SIZE
    mean: float = DEFAULT_MEAN
    std: float = DEFAULT_STD
    color: str = "gray"
    layout: str = "NCHW"
    interpolation: str = "area-down/linear-up"
    mask_interpolation: str = "nearest"
    version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessSpec":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PreprocessError(f"preprocessing spec has unknown keys {unknown}; known: {sorted(known)}")
        spec = cls(**data)
        if spec.color != "gray" or spec.layout != "NCHW" or spec.version != 1:
            raise PreprocessError(
                f"preprocessing spec {data} is not supported by this edge-bus "
                "(expected color='gray', layout='NCHW', version=1)"
            )
        if spec.size <= 0 or spec.std <= 0:
            raise PreprocessError(f"preprocessing spec needs size > 0 and std > 0, got {data}")
        return spec


def to_gray(frame: np.ndarray, *, what: str = "frame") -> np.ndarray:
    """Return a uint8 (H, W) image from gray, gray+1, BGR, BGRA, uint8 or uint16 input.

    Color input is taken as OpenCV's BGR order. Raises PreprocessError naming `what` otherwise.
    """
    if not isinstance(frame, np.ndarray):
        raise PreprocessError(f"{what}: expected a NumPy array, got {type(frame).__name__}")
    if frame.size == 0:
        raise PreprocessError(f"{what}: empty image (shape {frame.shape})")
    if frame.dtype == np.uint16:
        frame = (frame >> 8).astype(np.uint8)
    elif frame.dtype in (np.float32, np.float64):
        if not np.isfinite(frame).all():
            raise PreprocessError(f"{what}: float image contains NaN or infinity")
        frame = np.clip(frame * 255.0 if frame.max() <= 1.0 else frame, 0, 255).astype(np.uint8)
    elif frame.dtype != np.uint8:
        raise PreprocessError(f"{what}: unsupported dtype {frame.dtype} (use uint8, uint16 or float)")
    if frame.ndim == 2:
        gray = frame
    elif frame.ndim == 3 and frame.shape[2] == 1:
        gray = frame[:, :, 0]
    elif frame.ndim == 3 and frame.shape[2] == 3:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    else:
        raise PreprocessError(
            f"{what}: unsupported shape {frame.shape} (expected HxW, HxWx1, HxWx3 or HxWx4)"
        )
    if gray.shape[0] < 2 or gray.shape[1] < 2:
        raise PreprocessError(f"{what}: image too small ({gray.shape[1]}x{gray.shape[0]} pixels)")
    return np.ascontiguousarray(gray)


def resize_gray(gray: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Resize a uint8 (H, W) image to (size, size): area averaging when shrinking, else linear."""
    h, w = gray.shape[:2]
    if (h, w) == (size, size):
        return gray
    interpolation = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interpolation)


def resize_mask(mask: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Resize a mask (any nonzero = lesion) to a uint8 {0, 1} (size, size) mask, nearest neighbour."""
    binary = (np.asarray(mask) > 0).astype(np.uint8)
    if binary.ndim == 3:
        binary = binary.max(axis=2)
    if binary.shape == (size, size):
        return binary
    return cv2.resize(binary, (size, size), interpolation=cv2.INTER_NEAREST)


def normalize(resized: np.ndarray, spec: PreprocessSpec = PreprocessSpec()) -> np.ndarray:
    """uint8 (..., H, W) -> float32 (..., 1, H, W) with (x / 255 - mean) / std.

    Accepts one image (H, W) or a stack (N, H, W); inserts the channel axis before H.
    """
    if resized.dtype != np.uint8:
        raise PreprocessError(f"normalize expects uint8 input, got {resized.dtype}")
    scale = np.float32(1.0 / (255.0 * spec.std))
    offset = np.float32(spec.mean / spec.std)
    out = resized.astype(np.float32) * scale - offset
    return np.expand_dims(out, axis=-3)


def preprocess(frame: np.ndarray, spec: PreprocessSpec = PreprocessSpec(), *, what: str = "frame") -> np.ndarray:
    """Any frame -> float32 (1, size, size) model input."""
    return normalize(resize_gray(to_gray(frame, what=what), spec.size), spec)


def preprocess_batch(
    frames: Sequence[np.ndarray], spec: PreprocessSpec = PreprocessSpec(), *, out: np.ndarray | None = None
) -> np.ndarray:
    """A list of frames -> float32 (N, 1, size, size); writes into `out` when given (reused buffer)."""
    n = len(frames)
    if out is None:
        out = np.empty((n, 1, spec.size, spec.size), dtype=np.float32)
    elif out.shape[0] < n or out.shape[1:] != (1, spec.size, spec.size) or out.dtype != np.float32:
        raise PreprocessError(f"output buffer of shape {out.shape} cannot hold {n} frames of size {spec.size}")
    for i, frame in enumerate(frames):
        out[i] = preprocess(frame, spec, what=f"frame {i}")
    return out[:n]


# Decode at the file's own depth and channel count (alpha dropped, EXIF orientation applied like
# IMREAD_COLOR); to_gray then does the one colour -> gray conversion that live frames get too.
_DECODE_FLAGS = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR


def _decode(path, flags: int) -> np.ndarray:
    from pathlib import Path

    from edge_bus.errors import DataError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    data = np.fromfile(str(p), dtype=np.uint8)
    if data.size == 0:
        raise DataError(f"{p}: file is empty")
    image = cv2.imdecode(data, flags)
    if image is None:
        raise DataError(f"{p}: not a readable image (corrupt or unsupported format)")
    return image


def read_image(path, *, grayscale: bool = True) -> np.ndarray:
    """Read an image file as uint8 gray (H, W); raise DataError naming the file when it cannot be read.

    Gray comes from `to_gray`, so a colour file read here and the same picture delivered as a BGR
    frame give the same pixels. With grayscale=False the decoded array is returned unchanged.
    """
    if not grayscale:
        return _decode(path, cv2.IMREAD_UNCHANGED)
    return to_gray(_decode(path, _DECODE_FLAGS), what=str(path))  # PreprocessError is a DataError


def read_mask(path) -> np.ndarray:
    """Read a mask file as uint8 {0, 1} (H, W): any nonzero value in any colour channel is lesion.

    Works for gray, colour (alpha ignored) and 16-bit masks (a 16-bit value of 1 stays lesion).
    """
    mask = _decode(path, _DECODE_FLAGS)
    binary = mask > 0
    if binary.ndim == 3:
        binary = binary.any(axis=2)
    return binary.astype(np.uint8)
