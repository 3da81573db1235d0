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


def test_per_run_results_folder_is_new_and_latest(tmp_path):
    out = tmp_path / "out"
    earlier = [finished_run(out, started=START.replace(minute=m)) for m in range(3)]
    folder = results_folder(out, ["jsonl"], per_run=True)
    assert folder.parent == out and run_folders(out) == [*earlier, folder]  # nothing deleted before the run
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


def test_a_run_with_frames_prunes_when_it_ends_and_an_empty_one_never_does(tmp_path):
    out = tmp_path / "out"
    real = [pipeline_run(out, [np.zeros((40, 50), np.uint8)] * (m + 1), keep_runs=2)[0].out_dir for m in range(3)]
    assert run_folders(out) == real[1:]  # the third run, when it ended, deleted the first
    for _ in range(3):  # empty runs: they delete themselves and prune nothing
        pipeline_run(out, ["not an image"], keep_runs=1)
    assert run_folders(out) == real[1:]
    assert [len((f / "results.jsonl").read_text().splitlines()) for f in run_folders(out)] == [2, 3]


def test_a_run_without_counted_frames_keeps_a_folder_that_holds_results(tmp_path):
    """A frame's JSON line written before a later sink failed: the frame is not counted, the line stays."""
    from edge_bus.runtime.config import RunConfig
    from edge_bus.runtime.pipeline import Pipeline

    from fakes import ListSource, fake_model

    c = RunConfig(source="unused", classifier="unused", out=str(tmp_path / "out"), out_per_run=True,
                  sinks=["jsonl"], batch=1, max_wait_ms=5.0)  # fmt: skip
    pipeline = Pipeline(c, source=ListSource([np.zeros((40, 50), np.uint8)]), models=[fake_model()], handle_sigint=False)
    pipeline.stats.add_frame = lambda latency_ms: None  # the JSON line is written, the frame never counted
    summary = pipeline.run()
    assert summary["frames"] == 0 and pipeline.out_dir is not None
    assert json.loads((pipeline.out_dir / "results.jsonl").read_text())["frame"] == 0


def test_results_that_appear_while_the_models_load_are_refused_not_deleted(tmp_path, monkeypatch):
    """Checked before the models load, and again when the folder is used: a second run on the same
    --out during the first one's model loading must not have its results removed."""
    from edge_bus.runtime import pipeline as pipeline_module
    from edge_bus.runtime.config import RunConfig
    from edge_bus.runtime.pipeline import Pipeline

    from fakes import ListSource, fake_model

    out = tmp_path / "out"
    real = pipeline_module.refuse_overwrite

    def then_another_run_writes(path, names, *, overwrite):
        real(path, names, overwrite=overwrite)  # nothing there yet
        out.mkdir(exist_ok=True)
        (out / "results.jsonl").write_text('{"frame": 0, "by": "the other run"}\n')

    monkeypatch.setattr(pipeline_module, "refuse_overwrite", then_another_run_writes)
    c = RunConfig(source="unused", classifier="unused", out=str(out), sinks=["jsonl"])
    with pytest.raises(ConfigError, match="--overwrite"):
        Pipeline(c, source=ListSource([np.zeros((40, 50), np.uint8)]), models=[fake_model()], overwrite=False,
                 handle_sigint=False).run()  # fmt: skip
    assert "the other run" in (out / "results.jsonl").read_text()
