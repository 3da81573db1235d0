"""TorchScript export by tracing (the networks have no data-dependent control flow)."""

from __future__ import annotations

import warnings
from pathlib import Path

from edge_bus.errors import BundleError


def export_torchscript(model, path: str | Path, *, size: int) -> Path:
    """Trace `model` with a (2, 1, S, S) example and save it; the traced graph keeps the batch dynamic."""
    import torch  # noqa: PLC0415

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = torch.zeros(2, 1, size, size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            traced = torch.jit.trace(model, example, strict=False, check_trace=False)
            traced = torch.jit.freeze(traced)
        except Exception as exc:
            raise BundleError(f"{path}: TorchScript tracing of {type(model).__name__} failed: {exc}") from exc
        torch.jit.save(traced, str(path))
    return path


def load_torchscript(path: str | Path):
    import torch  # noqa: PLC0415

    p = Path(path)
    if not p.is_file():
        raise BundleError(f"{p}: TorchScript file not found; re-export with `edge-bus export ... --formats torchscript`")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(str(p), map_location="cpu").eval()
    except Exception as exc:
        raise BundleError(f"{p}: not a loadable TorchScript file ({type(exc).__name__}); re-export it") from None


def run_torch(module, batch, chunk: int = 8):
    """Run a torch module (eager or scripted) on a float32 NumPy batch; returns NumPy logits."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    outs = []
    with torch.no_grad():
        for i in range(0, len(batch), chunk):
            out = module(torch.from_numpy(np.ascontiguousarray(batch[i : i + chunk])))
            if isinstance(out, dict):
                out = out["out"]
            outs.append(out.float().cpu().numpy())
    return np.concatenate(outs)
