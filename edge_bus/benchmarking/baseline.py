"""The naive baseline a user would otherwise write: the PyTorch model, eager, FP32, one frame at a time.

Also the FP32 reference of the accuracy columns. torch is imported inside these functions only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edge_bus.bundle import Bundle
from edge_bus.errors import CheckpointError


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
    """The bundle's PyTorch model: from the checkpoint (or ensemble file) its provenance names, when
    that file exists and its SHA-256, and an ensemble's member checkpoints', are the ones recorded at
    export (`trained`). Else, for latency only (no accuracy reference): the changed file's model, or
    a freshly initialized network. The model runs at the bundle's own input size."""
    import torch  # noqa: PLC0415

    from edge_bus.exporting.source import ModelSpec, from_file, from_spec  # noqa: PLC0415

    m = bundle.manifest
    if threads:
        torch.set_num_threads(int(threads))
    prov = m.provenance
    kind = "ensemble" if prov.get("ensemble") and not prov.get("checkpoint") else "checkpoint"
    model_file = prov.get(kind)
    recorded = prov.get(f"{kind}_sha256")
    source, trained, reason = None, False, ""
    if not model_file:
        reason = "the bundle records no checkpoint"
    elif not Path(model_file).is_file():
        reason = f"its {kind} {model_file} is not on this machine"
    else:
        try:
            source = from_file(model_file, size=m.preprocessing.size)
        except CheckpointError as exc:  # e.g. an ensemble member that is gone or was retrained
            reason = str(exc)
        if source is not None:
            found = source.provenance.get(f"{kind}_sha256")
            if recorded and found != recorded:
                reason = (f"{model_file} has changed since the export (sha256 {str(found)[:12]}, bundle records "
                          f"{str(recorded)[:12]}); re-export the bundle from it")
            elif prov.get("member_sha256") and source.provenance.get("member_sha256") != prov["member_sha256"]:
                reason = f"a member checkpoint of {model_file} has changed since the export; re-export the bundle"
            else:
                trained = True
            # an untrusted file still has the right architecture: kept for latency, not for accuracy
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
