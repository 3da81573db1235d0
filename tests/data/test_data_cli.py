"""`edge-bus data synth | inspect | split | pack` end to end on phantoms, and bad input without tracebacks."""

import json

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from edge_bus.cli import data as data_cli
from edge_bus.data.pack import load_pack
from edge_bus.data.split import load_split


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()
    data_cli.register(app)
    app.command("noop")(lambda: None)  # a second command keeps "data" a subcommand
    return app


def _run(app, *args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result


def test_synth_inspect_split_pack(app, tmp_path):
    root = tmp_path / "busi"
    res = _run(app, "data", "synth", root, "--benign", 6, "--malignant", 5, "--normal", 4, "--size", "48x64", "--seed", 1)
    assert res.exit_code == 0, res.output
    assert len(list((root / "malignant").glob("malignant (*)_mask.png"))) == 5
    assert cv2.imread(str(root / "normal" / "normal (1).png")).shape == (48, 64, 3)

    out = tmp_path / "report"
    res = _run(app, "data", "inspect", root, "--out", out)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "inspect.json").read_text())
    assert report["counts"] == {"benign": 6, "malignant": 5, "normal": 4} and report["images"] == 15
    assert report["image_size"]["width"] == {"min": 64, "median": 64.0, "max": 64}
    plot = cv2.imread(str(out / "class_distribution.png"))
    assert plot is not None and plot.shape[0] > 100
    assert "malignant" in res.output and "duplicate groups" in res.output

    manifest = tmp_path / "split.json"
    res = _run(app, "data", "split", root, "--out", manifest, "--seed", 3, "--ratios", "0.6,0.2,0.2")
    assert res.exit_code == 0, res.output
    assert "none crosses splits" in res.output
    loaded = load_split(manifest)
    assert loaded.seed == 3 and loaded.ratios["val"] == 0.2
    counts = loaded.counts()
    for split in ("train", "val", "test"):  # the printed table matches the manifest
        assert f"{split} " in res.output and str(sum(counts[split].values())) in res.output

    cache = tmp_path / "cache.npz"
    res = _run(app, "data", "pack", manifest, "--out", cache, "--size", 32)
    assert res.exit_code == 0, res.output
    assert "MB" in res.output
    assert load_pack(cache).split("train").images.shape[1:] == (32, 32)


def test_bad_files_are_listed_and_counted(app, tmp_path, synthetic_busi):
    import shutil

    root = tmp_path / "busi"
    shutil.copytree(synthetic_busi, root)
    (root / "benign" / "benign (1).png").write_bytes(b"garbage")
    (root / "malignant" / "malignant (2)_mask.png").unlink()
    (root / "normal" / ".DS_Store").write_bytes(b"\0")
    res = _run(app, "data", "inspect", root, "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output
    for name in ("benign (1).png", "malignant (2).png", ".DS_Store"):
        assert name in res.output
    assert "skipped or ignored: 3" in res.output
    report = json.loads((tmp_path / "r" / "inspect.json").read_text())
    assert report["skipped_or_ignored"] == 3 and report["images"] == 18 - 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "inspect", "{tmp}"], "expected a BUSI layout"),
        (["data", "split", "{busi}", "--out", "{tmp}/s.json", "--ratios", "0.5,0.6"], "ratios"),
        (["data", "pack", "{tmp}/none.json", "--out", "{tmp}/c.npz"], "not found"),
        (["data", "synth", "{tmp}/x", "--size", "big"], "HEIGHTxWIDTH"),
    ],
)
def test_user_errors_exit_2_without_traceback(app, tmp_path, synthetic_busi, args, message):
    args = [a.format(tmp=tmp_path, busi=synthetic_busi) for a in args]
    res = _run(app, *args)
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and message in res.output


@pytest.mark.parametrize(
    "args",
    [
        ["data", "split", "{busi}", "--out", "{tmp}/s.json", "--seed", "-1"],
        ["data", "synth", "{tmp}/x", "--seed", "-3"],
    ],
)
def test_negative_seed_is_refused_by_the_option(app, tmp_path, synthetic_busi, args):
    res = _run(app, *[a.format(tmp=tmp_path, busi=synthetic_busi) for a in args])
    assert res.exit_code == 2 and "--seed" in res.output
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "inspect", "{busi}", "--out", "{tmp}/afile"], "afile is a file, not a folder"),
        (["data", "inspect", "{busi}", "--out", "{tmp}/afile/report"], "afile is a file, not a folder"),
        (["data", "split", "{busi}", "--out", "{tmp}"], "is a folder; give the file to write"),
        (["data", "split", "{busi}", "--out", "{tmp}/afile/s.json"], "afile is a file, not a folder"),
        (["data", "pack", "{tmp}/s.json", "--out", "{tmp}/afile/c.npz"], "afile is a file, not a folder"),
    ],
)
def test_out_paths_that_cannot_be_written_are_one_line_errors(app, tmp_path, synthetic_busi, args, message):
    from edge_bus.data.busi import index_busi
    from edge_bus.data.split import make_split, write_split

    (tmp_path / "afile").write_text("x")
    write_split(make_split(index_busi(synthetic_busi), seed=0), tmp_path / "s.json")
    res = _run(app, *[a.format(tmp=tmp_path, busi=synthetic_busi) for a in args])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and message in " ".join(res.output.split())


def test_split_remade_in_another_folder_says_only_data_root_changed(app, tmp_path, synthetic_busi):
    import shutil

    out = tmp_path / "split.json"
    assert _run(app, "data", "split", synthetic_busi, "--out", out).exit_code == 0
    first = load_split(out)
    moved = tmp_path / "moved"
    shutil.copytree(synthetic_busi, moved)
    res = _run(app, "data", "split", moved, "--out", out)
    assert res.exit_code == 0, res.output
    second = load_split(out)
    assert second.hash != first.hash
    text = " ".join(res.output.split())
    assert "unchanged except data_root" in text and first.hash[:12] in text and second.hash[:12] in text
    res = _run(app, "data", "split", moved, "--out", out, "--seed", 9)  # a real change: no such note
    assert "unchanged except data_root" not in res.output
