"""Per-run results folders, their retention, and the refusal to overwrite an earlier run's results."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import numpy as np
import pytest

from edge_bus.errors import ConfigError
from edge_bus.runtime import sinks as sinks_module
from edge_bus.runtime.sinks import (
    RUN_COUNTER,
    SUMMARY_FILE,
    discard_run_folder,
    make_run_folder,
    point_latest_at,
    prune_run_folders,
    refuse_overwrite,
    results_folder,
    run_folders,
)

START = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def finished_run(out, started=START, frames=1, pid=7):
    """A run folder as a finished run leaves it: its summary.json says how many frames it processed."""
    folder = make_run_folder(out, started=started, pid=pid)
    (folder / SUMMARY_FILE).write_text(json.dumps({"frames": frames}))
    return folder


def frames_of(folders):
    return [json.loads((f / SUMMARY_FILE).read_text())["frames"] for f in folders]


def test_run_folder_is_named_by_utc_start_and_pid(tmp_path):
    folder = make_run_folder(tmp_path / "out", started=START, pid=1234)
    assert folder.name == "20250102T030405Z-1234" and folder.is_dir()
    # a container restarted within the same second has the same pid (1): never the same folder
    again = make_run_folder(tmp_path / "out", started=START, pid=1234)
    assert again.name == "20250102T030405Z-1234-1"
    local = datetime(2025, 1, 2, 4, 4, 5).astimezone()  # any time zone: named in UTC
    assert make_run_folder(tmp_path / "tz", started=local.astimezone(timezone.utc), pid=1).name.endswith("Z-1")


def test_latest_points_at_the_newest_run(tmp_path):
    out = tmp_path / "out"
    first = make_run_folder(out, started=START, pid=1)
    point_latest_at(first)
    second = make_run_folder(out, started=START.replace(second=9), pid=1)
    point_latest_at(second)
    assert os.readlink(out / "latest") == second.name and (out / "latest").resolve() == second.resolve()
    assert run_folders(out) == [first, second]  # the link is not a run folder


def test_retention_keeps_n_runs_and_never_the_current_one(tmp_path):
    out = tmp_path / "out"
    runs = [finished_run(out, started=START.replace(minute=m)) for m in range(5)]
    (out / "notes").mkdir()  # not a run folder: never touched
    deleted = prune_run_folders(out, 3, runs[-1])
    assert deleted == runs[:2] and run_folders(out) == runs[2:] and (out / "notes").is_dir()
    # a clock set back: the current run sorts first, and still survives
    current = make_run_folder(out, started=START.replace(year=2000), pid=7)
    prune_run_folders(out, 1, current)
    assert run_folders(out) == [current]


def test_per_run_results_folder_prunes_at_start(tmp_path):
    out = tmp_path / "out"
    for m in range(3):
        finished_run(out, started=START.replace(minute=m))
    folder = results_folder(out, ["jsonl"], per_run=True, keep_runs=2)
    assert folder.parent == out and len(run_folders(out)) == 2 and folder in run_folders(out)
    assert (out / "latest").resolve() == folder.resolve()


def test_earlier_results_are_refused_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    refuse_overwrite(out, ["jsonl"], overwrite=False)  # nothing there yet
    out.mkdir()
    (out / "results.jsonl").write_text('{"frame": 0}\n')
    (out / "masks").mkdir()
    (out / "masks" / "000000.png").write_bytes(b"png")
    (out / "masks" / "keep.txt").write_text("not ours")
    with pytest.raises(ConfigError) as exc:
        results_folder(out, ["jsonl", "masks"], overwrite=False)
    msg = str(exc.value)
    assert "results.jsonl" in msg and "--overwrite" in msg and "--per-run-folder" in msg
    assert results_folder(out, ["jsonl", "masks"], overwrite=True) == out
    assert not (out / "results.jsonl").exists() and not (out / "masks" / "000000.png").exists()
    assert (out / "masks" / "keep.txt").exists()  # only what a run writes is removed


def test_runs_without_frames_are_not_counted(tmp_path):
    """A card plugged in without a signal: every restart is a run with no frame; keep_runs must keep
    the real runs however many of those came after them."""
    out = tmp_path / "out"
    real = [finished_run(out, started=START.replace(minute=m), frames=100 + m) for m in range(3)]
    empty = [finished_run(out, started=START.replace(hour=5, minute=m), frames=0) for m in range(20)]
    starting = make_run_folder(out, started=START.replace(hour=6), pid=8)  # another run, no summary yet
    current = make_run_folder(out, started=START.replace(hour=7), pid=9)
    deleted = prune_run_folders(out, 3, current)
    assert deleted == [real[0], *empty]  # the finished empty runs go, and only the oldest real one
    assert run_folders(out) == [real[1], real[2], starting, current]
    assert frames_of(run_folders(out)[:2]) == [101, 102]
    # a folder with results but no summary (a run killed with SIGKILL) counts as a run
    (starting / "results.jsonl").write_text('{"frame": 0}\n')
    assert prune_run_folders(out, 3, current) == [real[1]]


def test_runs_are_ordered_by_their_sequence_number_not_the_clock(tmp_path):
    """A cart without RTC or NTP starts with its clock reset: names go back in time, the counter does not."""
    out = tmp_path / "out"
    first = finished_run(out, started=START, frames=1)
    reset = finished_run(out, started=datetime(2000, 1, 1, tzinfo=timezone.utc), frames=2)  # sorts first by name
    later = finished_run(out, started=datetime(2000, 1, 1, 0, 5, tzinfo=timezone.utc), frames=3)
    assert run_folders(out) == [first, reset, later]
    current = make_run_folder(out, started=datetime(2000, 1, 1, 0, 10, tzinfo=timezone.utc), pid=7)
    assert prune_run_folders(out, 3, current) == [first]  # the oldest run, not the earliest name
    assert frames_of(run_folders(out)[:2]) == [2, 3]
    # a lost counter file: numbers still go up from the folders' own
    (out / RUN_COUNTER).unlink()
    newest = make_run_folder(out, started=datetime(1999, 1, 1, tzinfo=timezone.utc), pid=7)
    assert run_folders(out)[-1] == newest


def test_an_empty_run_folder_is_discarded_and_latest_points_back(tmp_path):
    out = tmp_path / "out"
    real = finished_run(out, frames=5)
    point_latest_at(real)
    empty = make_run_folder(out, started=START.replace(minute=9), pid=7)
    point_latest_at(empty)
    assert discard_run_folder(empty) and not empty.exists()
    assert os.readlink(out / "latest") == real.name
    assert discard_run_folder(real) and not os.path.lexists(out / "latest")  # nothing left to point at


def test_latest_that_is_not_a_link_is_left_alone(tmp_path, caplog):
    out = tmp_path / "out"
    folder = make_run_folder(out, started=START, pid=1)
    (out / "latest").write_text("my notes")  # a regular file someone called latest
    point_latest_at(folder)
    assert (out / "latest").read_text() == "my notes" and "not a symbolic link" in caplog.text
    (out / "latest").unlink()
    os.symlink("elsewhere", out / "latest")  # a link, even a dangling one, is ours to replace
    point_latest_at(folder)
    assert os.readlink(out / "latest") == folder.name


def pipeline_run(out, images, keep_runs=None):
    from edge_bus.runtime.config import RunConfig
    from edge_bus.runtime.pipeline import Pipeline

    from fakes import ListSource, fake_model

    c = RunConfig(source="unused", classifier="unused", out=str(out), out_per_run=True, keep_runs=keep_runs,
                  sinks=["jsonl", "masks"], batch=2, max_wait_ms=5.0)  # fmt: skip
    pipeline = Pipeline(c, source=ListSource(images), models=[fake_model()], handle_sigint=False)
    return pipeline, pipeline.run()


def test_a_run_without_frames_deletes_its_own_folder(tmp_path):
    out = tmp_path / "out"
    pipeline, summary = pipeline_run(out, [np.zeros((40, 50), np.uint8)] * 2)
    kept = pipeline.out_dir
    assert summary["frames"] == 2 and kept.is_dir() and os.readlink(out / "latest") == kept.name
    for _ in range(3):  # restarts that get no frame (bad frames only)
        pipeline, summary = pipeline_run(out, ["not an image"], keep_runs=2)
        assert summary["frames"] == 0 and summary["out_dir"] is None and pipeline.out_dir is None
    assert run_folders(out) == [kept] and os.readlink(out / "latest") == kept.name


def test_earlier_results_are_refused_once(tmp_path, monkeypatch):
    """Refused before the models are loaded, and not looked for a second time when the folder is made."""
    from edge_bus.runtime import pipeline as pipeline_module
    from edge_bus.runtime.config import RunConfig
    from edge_bus.runtime.pipeline import Pipeline

    from fakes import ListSource, fake_model

    calls = []
    real = sinks_module.refuse_overwrite

    def counted(out, names, *, overwrite):
        if not overwrite:  # overwrite=True looks for nothing
            calls.append(out)
        return real(out, names, overwrite=overwrite)

    monkeypatch.setattr(sinks_module, "refuse_overwrite", counted)
    monkeypatch.setattr(pipeline_module, "refuse_overwrite", counted)
    c = RunConfig(source="unused", classifier="unused", out=str(tmp_path / "out"), sinks=["jsonl"])
    Pipeline(c, source=ListSource([np.zeros((40, 50), np.uint8)]), models=[fake_model()], overwrite=False,
             handle_sigint=False).run()  # fmt: skip
    assert len(calls) == 1
