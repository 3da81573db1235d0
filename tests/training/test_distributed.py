from __future__ import annotations

import json
import socket

import pytest
import torch.multiprocessing as mp

from tests.training.ddp_worker import run_rank


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_agree_and_write_one_checkpoint(synthetic_pack, tmp_path):
    out, reports = tmp_path / "out", tmp_path / "reports"
    reports.mkdir()
    mp.spawn(run_rank, args=(2, _free_port(), str(synthetic_pack), str(out), str(reports)), nprocs=2, join=True)
    r0, r1 = (json.loads((reports / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["losses"] == r1["losses"]  # all-reduced
    assert r0["scores"] == r1["scores"] and r0["best_epoch"] == r1["best_epoch"]
    assert r0["digest"] == r1["digest"]
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "history.json", "last_state.pt"]
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2
