"""HealthReporter: atomic, rate-limited status file and the optional loopback HTTP endpoint."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest

# never go through a proxy from the environment for loopback
urlopen = urllib.request.build_opener(urllib.request.ProxyHandler({})).open

from edge_bus.errors import ConfigError
from edge_bus.runtime.health import HealthReporter


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def read(path):
    return json.loads(path.read_text())


def test_writes_all_fields_at_start(tmp_path):
    path = tmp_path / "sub" / "health.json"
    HealthReporter(path, 2.0)
    doc = read(path)
    for key in ("fps", "frames", "drops", "bad_frames", "last_error", "uptime", "backend", "source", "pid", "updated_at"):
        assert key in doc, key
    assert doc["state"] == "running" and doc["pid"] == os.getpid()


def test_rate_limited_and_fps_from_frames(tmp_path):
    clock = Clock()
    path = tmp_path / "health.json"
    rep = HealthReporter(path, 2.0, clock=clock)
    clock.t += 1.0
    assert rep.update({"frames": 10, "backend": "onnxruntime[CPU]", "source": "synthetic://"}) is False
    assert read(path)["frames"] == 0  # not yet written
    clock.t += 1.0
    assert rep.update({"frames": 20}) is True
    clock.t += 2.0
    assert rep.update({"frames": 80, "drops": 3, "last_error": "frame 7: empty"}) is True
    doc = read(path)
    assert doc["frames"] == 80 and doc["drops"] == 3 and doc["backend"] == "onnxruntime[CPU]"
    assert doc["fps"] == pytest.approx(30.0)  # (80 - 20) frames / 2 s
    assert doc["uptime"] == pytest.approx(4.0) and doc["last_error"] == "frame 7: empty"
    assert [p.name for p in tmp_path.iterdir()] == ["health.json"]  # no temporary files left


def test_given_fps_wins_and_close_writes_final_state(tmp_path):
    clock = Clock()
    path = tmp_path / "health.json"
    rep = HealthReporter(path, 60.0, clock=clock)
    rep.update({"frames": 5, "fps": 12.5})
    clock.t += 0.1
    rep.close({"frames": 6})  # not rate-limited
    doc = read(path)
    assert doc["state"] == "stopped" and doc["frames"] == 6 and doc["fps"] == 12.5


def test_unwritable_folder_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="health_file"):
        HealthReporter(blocker / "health.json", 1.0)


def test_write_failure_later_does_not_raise(tmp_path):
    clock = Clock()
    path = tmp_path / "d" / "health.json"
    rep = HealthReporter(path, 1.0, clock=clock)
    path.unlink()
    path.parent.rmdir()  # folder gone while running (a tmpfs cleaned up): made again, writing goes on
    clock.t += 5
    assert rep.update({"frames": 1}) is True and read(path)["frames"] == 1
    path.unlink()
    path.parent.rmdir()
    path.parent.write_text("not a folder")  # now it cannot be written: counted and logged, never raised
    clock.t += 5
    assert rep.update({"frames": 2}) is False and rep.write_errors == 1
    rep.close({"frames": 3})
    assert rep.write_errors == 2


def test_health_file_is_written_by_the_shared_atomic_writer(tmp_path, monkeypatch):
    from edge_bus import fileio
    from edge_bus.runtime import health

    calls = []
    real = fileio.write_text_atomic
    monkeypatch.setattr(fileio, "write_text_atomic", lambda path, text: calls.append(path) or real(path, text))
    path = tmp_path / "health.json"
    HealthReporter(path, 1.0).close({"frames": 1})
    assert calls == [path, path] and list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    text = path.read_text()
    assert text.endswith("\n") and list(json.loads(text)) == sorted(json.loads(text))  # sorted keys
    assert health.write_json_atomic(tmp_path / "x.json", {"b": 1, "a": 2}) == tmp_path / "x.json"


def test_http_endpoint_on_loopback(tmp_path):
    rep = HealthReporter(None, 1.0, http_port=0)
    try:
        host, port = rep.http_address
        assert host == "127.0.0.1"
        rep.update({"frames": 42, "source": "v4l2:///dev/video0"})
        with urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
            doc = json.loads(resp.read())
        assert doc["frames"] == 42 and doc["source"] == "v4l2:///dev/video0" and doc["state"] == "running"
        with pytest.raises(urllib.error.HTTPError) as exc:
            urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
        assert exc.value.code == 404
    finally:
        rep.close()
    assert rep.http_address is None
    with pytest.raises(urllib.error.URLError):
        urlopen(f"http://127.0.0.1:{port}/health", timeout=2)


def test_http_port_in_use_is_a_config_error():
    first = HealthReporter(None, 1.0, http_port=0)
    try:
        with pytest.raises(ConfigError, match="health_port"):
            HealthReporter(None, 1.0, http_port=first.http_address[1])
    finally:
        first.close()
