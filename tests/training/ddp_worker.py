"""Entry point of one rank in the two-process gloo test (module level so spawn can import it)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def run_rank(rank: int, world: int, port: int, pack: str, out: str, reports: str) -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    from edge_bus.training.loop import TrainConfig, train

    result = train(TrainConfig(model="unet", pack=Path(pack), out=Path(out), epochs=2, batch_size=2, lr=3e-3,
                               device="cpu", model_kwargs={"width": 2}, progress=False))
    state = torch.load(result.last_state, weights_only=True)["model"] if rank == 0 else None
    # Each rank reports what it believes; the test compares them.
    from edge_bus.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(result.best_checkpoint)
    digest = float(sum(v.double().sum() for v in ckpt.state_dict.values() if v.is_floating_point()))
    Path(reports, f"rank{rank}.json").write_text(json.dumps({
        "losses": [h["train_loss"] for h in result.history],
        "scores": [h["val"]["score"] for h in result.history],
        "best_epoch": result.best_epoch,
        "digest": digest,
        "has_state": state is not None,
    }))
