from __future__ import annotations

import json
import socket
import time

import pytest
import torch.multiprocessing as mp

from tests.training.ddp_worker import run_rank


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn_two_ranks(args: tuple, timeout_s: float = 240) -> None:
    """Run both ranks; a rank that stops alone leaves the other waiting, so wait with a deadline."""
    ctx = mp.spawn(run_rank, args=args, nprocs=2, join=False)
    deadline = time.monotonic() + timeout_s
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for process in ctx.processes:
                process.kill()
            pytest.fail(f"the two ranks did not finish within {timeout_s} s: they disagreed about when to stop")


@pytest.mark.slow
def test_two_gloo_ranks_stop_together_on_rank0_scores_and_write_one_checkpoint(synthetic_pack, tmp_path):
    out, reports = tmp_path / "out", tmp_path / "reports"
    reports.mkdir()
    # Rank 0 improves at epoch 2 and then stalls (patience 1: stop after epoch 3); rank 1's own
    # figures would stall at epoch 2 already and then improve.
    scripted = [[0.1, 0.2, 0.1, 0.1], [0.5, 0.4, 0.6, 0.7]]
    _spawn_two_ranks((2, _free_port(), str(synthetic_pack), str(out), str(reports), scripted, 4, 1))
    r0, r1 = (json.loads((reports / f"rank{r}.json").read_text()) for r in (0, 1))
    for r in (r0, r1):
        assert r["scores"] == [0.1, 0.2, 0.1] and r["stop_reason"] == "patience"
        assert r["best_epoch"] == r["checkpoint_best_epoch"] == 2 and r["best_score"] == r["checkpoint_score"] == 0.2
    assert r0["losses"] == r1["losses"]  # all-reduced
    # two per epoch: the validation figures with the time budget, then rank 0's save outcome (the epoch's barrier)
    assert r0["broadcasts"] == r1["broadcasts"] == 6
    # DDP keeps the parameters identical on both ranks, and rank 0 saved exactly its own.
    assert r0["own_parameters"] == r1["own_parameters"] == r0["saved_parameters"]
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "history.json", "last_state.pt"]
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3] and history[-1]["stop_reason"] == "patience"


@pytest.mark.slow
def test_a_validation_error_on_rank0_stops_every_rank_with_that_error(synthetic_pack, tmp_path):
    out, reports = tmp_path / "out", tmp_path / "reports"
    reports.mkdir()
    # Rank 0's metrics raise in epoch 1; rank 1 must not be left waiting for figures that never come.
    _spawn_two_ranks((2, _free_port(), str(synthetic_pack), str(out), str(reports), None, 2, 10, True), timeout_s=180)
    for rank in (0, 1):
        r = json.loads((reports / f"rank{rank}.json").read_text())
        assert r.get("error") == "ValidationError", r
        assert "validation failed on rank 0 at epoch 1" in r["message"] and "scripted metric failure" in r["message"], r
    assert not (out / "best.pt").exists()


@pytest.mark.slow
def test_a_failed_save_on_rank0_stops_every_rank_with_that_error(synthetic_pack, tmp_path):
    out, reports = tmp_path / "out", tmp_path / "reports"
    reports.mkdir()
    # Only rank 0 writes the checkpoint, state and history; its disk fills in epoch 1.
    _spawn_two_ranks((2, _free_port(), str(synthetic_pack), str(out), str(reports), None, 2, 10, False, True), timeout_s=180)
    for rank in (0, 1):
        r = json.loads((reports / f"rank{rank}.json").read_text())
        assert r.get("error") == "SaveError", r
        assert "saving epoch 1 failed on rank 0" in r["message"] and "no space left" in r["message"], r
