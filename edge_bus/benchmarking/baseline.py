"""The naive baseline a user would otherwise write: the PyTorch model, eager, FP32, one frame at a time.

Also the FP32 reference of the accuracy columns. torch is imported inside these functions only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edge_bus.bundle import Bundle


@dataclass
class EagerModel:
    infer: Callable[[np.ndarray], np.ndarray]  # float32 (N,1,S,S) -> logits, device-synchronized
    sync: Callable[[], None]
    device: str
    trained: bool  # weights from the bundle's checkpoint (else freshly initialized)
    detail: str
    reason: str = ""  # why the checkpoint was not used (when trained is False)


def torch_device(device: str) -> str:
    import torch  # noqa: PLC0415

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def eager_model(bundle: Bundle, *, device: str = "auto", threads: int | None = None) -> EagerModel:
    """The bundle's PyTorch model: from the checkpoint its provenance names, when that file exists
    and its SHA-256 is the one recorded at export; else freshly initialized (fine for latency, no
    accuracy reference). The model runs at the bundle's own input size."""
    import torch  # noqa: PLC0415

    from edge_bus.exporting.source import ModelSpec, from_checkpoint, from_spec  # noqa: PLC0415

    m = bundle.manifest
    if threads:
        torch.set_num_threads(int(threads))
    checkpoint = m.provenance.get("checkpoint")
    recorded = m.provenance.get("checkpoint_sha256")
    source, trained, reason = None, False, ""
    if not checkpoint:
        reason = "the bundle records no checkpoint"
    elif not Path(checkpoint).is_file():
        reason = f"its checkpoint {checkpoint} is not on this machine"
    else:
        source = from_checkpoint(checkpoint, size=m.preprocessing.size)
        found = source.provenance.get("checkpoint_sha256")
        if recorded and found != recorded:
            reason = (f"{checkpoint} has changed since the export (sha256 {str(found)[:12]}, bundle records "
                      f"{str(recorded)[:12]}); re-export the bundle from it")
            source = None
        else:
            trained = True
    if source is None:
        kwargs = dict(m.provenance.get("model_kwargs") or {})
        source = from_spec(ModelSpec(m.model, kwargs=kwargs, size=m.preprocessing.size, classes=tuple(m.classes)))
        trained = False
    dev = torch_device(device)
    model = source.model.eval().to(dev)
    cuda = dev.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def infer(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(batch).to(dev))
            if isinstance(out, dict):  # torchvision segmentation models return {"out": ...}
                out = out["out"]
            result = out.float().cpu().numpy()  # .cpu() waits for the device
        return result

    return EagerModel(infer=infer, sync=sync, device=dev, trained=trained, detail=f"torch {torch.__version__} eager fp32 on {dev}", reason=reason)
