"""Entry point of one rank in the two-process gloo test (module level so spawn can import it).

Test hooks, set inside this rank's process: `loop.create` is wrapped to keep the rank's own model
(to compare the weights each rank ends with), and with `scripted_scores` the validation score of
epoch e on rank r is replaced by scripted_scores[r][e], so the ranks would disagree about when to
stop if each decided on its own figures. Every rank counts its calls of
`distributed.broadcast_from_main`; with `fail_validation`, rank 0's validation metrics raise, with
`fail_save` its history write raises (a full disk), and each rank reports the error it ends with
instead of its results.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def _digest(named_tensors) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(named_tensors):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _install_hooks(rank: int, scripted_scores: list[list[float]] | None, fail_validation: bool = False,
                   fail_save: bool = False) -> dict:
    from edge_bus.training import distributed, loop

    kept: dict = {"broadcasts": 0}
    real_create, real_metrics, real_broadcast = loop.create, loop.task_metrics, distributed.broadcast_from_main

    def counted_broadcast(*args, **kwargs):
        kept["broadcasts"] += 1
        return real_broadcast(*args, **kwargs)

    distributed.broadcast_from_main = counted_broadcast

    def create_and_keep(*args, **kwargs):
        kept["model"] = real_create(*args, **kwargs)
        return kept["model"]

    loop.create = create_and_keep
    if scripted_scores is not None:
        scores = iter(scripted_scores[rank])

        def scripted(*args, **kwargs):
            return {**real_metrics(*args, **kwargs), "score": next(scores)}

        loop.task_metrics = scripted
    if fail_validation and rank == 0:

        def failing(*args, **kwargs):
            raise RuntimeError("scripted metric failure")

        loop.task_metrics = failing
    if fail_save and rank == 0:

        def disk_full(*args, **kwargs):
            raise OSError(28, "scripted: no space left on device")

        loop.write_json_atomic = disk_full
    return kept


def run_rank(rank: int, world: int, port: int, pack: str, out: str, reports: str,
             scripted_scores: list[list[float]] | None = None, epochs: int = 2, patience: int = 10,
             fail_validation: bool = False, fail_save: bool = False) -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    from edge_bus.training.checkpoint import load_checkpoint
    from edge_bus.training.loop import TrainConfig, train

    kept = _install_hooks(rank, scripted_scores, fail_validation, fail_save)
    try:
        result = train(TrainConfig(model="unet", pack=Path(pack), out=Path(out), epochs=epochs, batch_size=2, lr=3e-3,
                                   device="cpu", model_kwargs={"width": 2}, patience=patience, progress=False))
    except Exception as exc:  # reported, so the test sees what every rank ended with
        Path(reports, f"rank{rank}.json").write_text(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        # After a failed run, torch's exit-time destructors (the TCPStore / gloo threads of rank 0)
        # sometimes abort the process ("terminate called without an active exception", about 1 run
        # in 30 here) once the error is out and the group destroyed; the report above is what the test
        # checks, so leave without them.
        os._exit(0)
    own = dict(kept["model"].named_parameters())
    saved = torch.load(result.last_state, weights_only=True)["model"]  # written by rank 0
    best = load_checkpoint(result.best_checkpoint)
    Path(reports, f"rank{rank}.json").write_text(json.dumps({
        "losses": [h["train_loss"] for h in result.history],
        "scores": [h["val"]["score"] for h in result.history],
        "best_epoch": result.best_epoch,
        "best_score": result.best_score,
        "stop_reason": result.stop_reason,
        "broadcasts": kept["broadcasts"],
        "own_parameters": _digest(own.items()),
        "saved_parameters": _digest((k, saved[k]) for k in own),
        "checkpoint_best_epoch": best.train["best_epoch"],
        "checkpoint_score": best.metrics["val"]["score"],
    }))
