"""Per-run results folders, their retention, and the refusal to overwrite an earlier run's results."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest

from edge_bus.errors import ConfigError
from edge_bus.runtime.sinks import (
    make_run_folder,
    point_latest_at,
    prune_run_folders,
    refuse_overwrite,
    results_folder,
    run_folders,
)

START = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


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
    runs = [make_run_folder(out, started=START.replace(minute=m), pid=7) for m in range(5)]
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
        make_run_folder(out, started=START.replace(minute=m), pid=7)
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
