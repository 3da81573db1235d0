"""Export every roster network at 256x256 to ONNX (dynamic batch) and compare ONNX Runtime with torch.

    python benchmarks/export/roster_onnx_check.py [--models vgg19,unet] [--out benchmarks/export/roster_onnx.json]

Freshly initialized weights (seed 0): this checks the exporter and numerics, not accuracy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ROSTER = ["vgg19", "resnet50", "efficientnet_b0", "unet", "unet_vgg19", "deeplabv3_resnet101"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(ROSTER))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", default=str(Path(__file__).with_name("roster_onnx.json")))
    args = ap.parse_args()
    import torch

    from edge_bus.exporting.to_onnx import export_onnx, ort_session, run_onnx
    from edge_bus.exporting.to_torchscript import run_torch
    from edge_bus.models import create

    torch.set_num_threads(2)
    rows = []
    x = np.random.default_rng(0).normal(size=(2, 1, args.size, args.size)).astype(np.float32)
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = create(name).eval()
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            try:
                path = export_onnx(model, Path(tmp) / "m.onnx", size=args.size)
            except Exception as exc:  # record, go on with the next model
                rows.append({"model": name, "ok": False, "error": str(exc)[:300]})
                print(rows[-1], flush=True)
                continue
            export_s = time.perf_counter() - t0
            session = ort_session(path, threads=2)
            ref = run_torch(model, x)
            got1, got2 = run_onnx(session, x[:1]), run_onnx(session, x)
            diff = float(max(np.abs(got1 - ref[:1]).max(), np.abs(got2 - ref).max()))
            scale = float(np.abs(ref).max())
            rows.append({"model": name, "ok": True, "export_s": round(export_s, 1), "onnx_mb": round(path.stat().st_size / 2**20, 1),
                         "output_shape": list(got2.shape), "max_abs_diff": diff, "max_abs_ref": scale})
            print(rows[-1], flush=True)
    Path(args.out).write_text(json.dumps({"size": args.size, "exporter": "torch.onnx.export(dynamo=True)",
                                          "torch": torch.__version__, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
