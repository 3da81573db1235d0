"""File helpers every part shares: content hashes, reading text and JSON with one-line errors,
atomic writes and output-path checks (no torch)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks (an ONNX file of VGG-19 is hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_text(path: str | Path, error: type[Exception], *, what: str, fix: str, missing: str | None = None) -> str:
    """The UTF-8 text of `path`, or `error` with one line naming it: '<path>: <what> not found;
    <missing or fix>', or is a folder / is not UTF-8 text / cannot be read; <fix>'."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{p}: {what} not found; {missing or fix}") from None
    except IsADirectoryError:
        raise error(f"{p}: is a folder; {fix}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{p}: {what} is not UTF-8 text (byte {exc.start}); {fix}") from None
    except OSError as exc:
        raise error(f"{p}: {what} cannot be read ({exc.strerror or type(exc).__name__}); {fix}") from None


def read_json(path: str | Path, error: type[Exception], *, what: str, fix: str, missing: str | None = None) -> Any:
    """The JSON value in `path`; `error` with one line naming it when the file cannot be read
    (see read_text) or is not valid JSON ('<what> is not valid JSON (<reason> at line N); <fix>')."""
    text = read_text(path, error, what=what, fix=fix, missing=missing)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{Path(path)}: {what} is not valid JSON ({exc.msg} at line {exc.lineno}); {fix}") from None


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write through a temporary file in the same folder and os.replace: readers never see half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def write_json_atomic(path: str | Path, data: Any, *, sort_keys: bool = False) -> Path:
    """JSON (indent 2, trailing newline) written atomically; non-JSON values become strings."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=sort_keys, default=str) + "\n")


def file_above(path: str | Path) -> Path | None:
    """The nearest existing ancestor of `path` when it is a file (so nothing can be created under it)."""
    for parent in Path(path).parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def check_out_file(path: str | Path, error: type[Exception], *, example: str, label: str = "") -> None:
    """Raise `error` when `path`, a file to write, is an existing folder or lies under a file.
    `example` is a file name suggested inside the folder; `label` (e.g. "--out") starts the message."""
    path = Path(path)
    shown = f"{label} {path}" if label else str(path)
    if path.is_dir():
        raise error(f"{shown}: is a folder; give the file to write, e.g. {path / example}")
    blocker = file_above(path)
    if blocker is not None:
        raise error(f"{shown}: {blocker} is a file, not a folder; give a path in an existing or new folder")
