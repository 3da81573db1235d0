import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_bus.cli import app
from edge_bus.comparison import compare
from edge_bus.errors import ConfigError

runner = CliRunner()
CLASSES = ["benign", "malignant", "normal"]


def seg_report(path, ious, lesion, **extra):
    rows = [{"id": f"img{i}", "lesion": bool(h), "iou": float(v), "dice": float(v)} for i, (v, h) in enumerate(zip(ious, lesion))]
    report = {"model": extra.pop("model", "m"), "task": "segmentation", "split": "test", "split_hash": "abc" * 10,
              "pack_sha256": "p1" * 16, "n": len(rows), "segmentation": {"per_image": rows}, **extra}
    path.mkdir(parents=True, exist_ok=True)
    (path / "report.json").write_text(json.dumps(report))
    return path


def cls_report(path, truth, predicted, **extra):
    rows = [{"id": f"img{i}", "truth": CLASSES[t], "predicted": CLASSES[p], "probabilities": [0.0, 0.0, 1.0]}
            for i, (t, p) in enumerate(zip(truth, predicted))]
    report = {"model": "c", "task": "classification", "split": "test", "split_hash": "abc" * 10, "n": len(rows),
              "classification": {"classes": CLASSES, "per_image": rows}, **extra}
    path.mkdir(parents=True, exist_ok=True)
    (path / "report.json").write_text(json.dumps(report))
    return path


def test_a_clearly_better_segmenter_is_called_ahead(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.9, 60)
    lesion = np.arange(60) >= 10
    a = seg_report(tmp_path / "a", base + 0.05 * lesion, lesion)
    b = seg_report(tmp_path / "b", base, lesion)
    r = compare(a, b)
    fig = r["figures"]
    assert fig["mean IoU, all images"]["difference"] == pytest.approx(0.05 * 50 / 60)
    assert fig["mean IoU, all images"]["interval"][0] > 0 and fig["mean IoU, lesion only"]["a_ahead"] == 1.0
    assert fig["mean IoU, lesion only"]["difference"] == pytest.approx(0.05)
    assert r["n"] == 60 and r["warnings"] == []
    swapped = compare(b, a)["figures"]["mean IoU, all images"]
    assert swapped["interval"][1] < 0 and swapped["a_ahead"] == 0.0


def test_images_are_paired_by_id_not_by_position(tmp_path):
    ious = np.linspace(0, 1, 20)
    a = seg_report(tmp_path / "a", ious, [True] * 20)
    report = json.loads((a / "report.json").read_text())
    report["segmentation"]["per_image"].reverse()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "report.json").write_text(json.dumps(report))
    r = compare(a, tmp_path / "b" / "report.json")
    assert r["figures"]["mean IoU, all images"]["interval"] == [0.0, 0.0]


def test_older_reports_without_lesion_flags_compare_over_all_images_only(tmp_path):
    a = seg_report(tmp_path / "a", [0.5] * 10, [True] * 10)
    b = seg_report(tmp_path / "b", [0.4] * 10, [True] * 10)
    for p in (a, b):
        report = json.loads((p / "report.json").read_text())
        for row in report["segmentation"]["per_image"]:
            del row["lesion"]
        (p / "report.json").write_text(json.dumps(report))
    result = compare(a, b)
    assert list(result["figures"]) == ["mean IoU, all images", "mean Dice, all images"]
    assert "lesion-only figures left out" in result["warnings"][0]
    # one newer report is enough, whichever side it is on
    c = seg_report(tmp_path / "c", [0.4] * 5 + [1.0] * 5, [True] * 5 + [False] * 5)
    d = seg_report(tmp_path / "d", [0.3] * 5 + [1.0] * 5, [True] * 5 + [False] * 5)
    report = json.loads((d / "report.json").read_text())
    for row in report["segmentation"]["per_image"]:
        del row["lesion"]
    (d / "report.json").write_text(json.dumps(report))
    for x, y in ((c, d), (d, c)):
        r = compare(x, y)["figures"]["mean IoU, lesion only"]
        assert abs(r["difference"]) == pytest.approx(0.1)


def test_classifiers_are_compared_on_weighted_f1_and_accuracy(tmp_path):
    truth = [0] * 30 + [1] * 20 + [2] * 10
    a = cls_report(tmp_path / "a", truth, truth)
    wrong = list(truth)
    for i in range(0, 60, 4):
        wrong[i] = (wrong[i] + 1) % 3
    b = cls_report(tmp_path / "b", truth, wrong)
    r = compare(a, b)
    assert r["figures"]["accuracy"]["difference"] == pytest.approx(15 / 60)
    assert r["figures"]["weighted F1"]["interval"][0] > 0
    assert r["images"] == {"only A right": 15, "only B right": 0, "both wrong": 0}


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(split_hash="other"), "different images"),
    (lambda r: r.update(split="val"), "different images"),
    (lambda r: r["segmentation"]["per_image"].pop(), "same images"),
    (lambda r: r["segmentation"].pop("per_image"), "no per-image results"),
    (lambda r: r.update(task="classification", classification={}), "classification report"),
    (lambda r: r["segmentation"]["per_image"].append(dict(r["segmentation"]["per_image"][0])), "same images"),
    (lambda r: r["segmentation"]["per_image"][0].update(lesion=False), "which images have a lesion"),
    (lambda r: r.pop("split_hash"), "no split_hash"),
])
def test_reports_of_other_images_are_refused(tmp_path, change, message):
    a = seg_report(tmp_path / "a", [0.5] * 10, [True] * 10)
    b = seg_report(tmp_path / "b", [0.4] * 10, [True] * 10)
    report = json.loads((b / "report.json").read_text())
    change(report)
    (b / "report.json").write_text(json.dumps(report))
    with pytest.raises(ConfigError, match=message):
        compare(a, b)


def test_classifiers_that_disagree_on_the_truth_are_refused(tmp_path):
    a = cls_report(tmp_path / "a", [0, 1, 2], [0, 1, 2])
    b = cls_report(tmp_path / "b", [0, 1, 1], [0, 1, 2])
    with pytest.raises(ConfigError, match="true class"):
        compare(a, b)


def test_other_pixels_of_the_same_images_are_compared_with_a_warning(tmp_path):
    a = seg_report(tmp_path / "a", [0.5] * 10, [True] * 10)
    b = seg_report(tmp_path / "b", [0.4] * 10, [True] * 10, pack_sha256="p2" * 16)
    assert "other pixels" in compare(a, b)["warnings"][0]


def test_cli_writes_the_comparison_and_refuses_a_file_as_out(tmp_path):
    a = seg_report(tmp_path / "a", [0.6] * 10, [True] * 10, model="ensemble")
    b = seg_report(tmp_path / "b", [0.5] * 10, [True] * 10, model="unet")
    res = runner.invoke(app, ["compare", str(a), str(b / "report.json"), "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    assert "A ahead" in res.output and "ensemble (A) against unet (B)" in res.output
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["figures"]["mean IoU, all images"]["a_ahead"] == 1.0
    (tmp_path / "file").write_text("x")
    res = runner.invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "file")])
    assert res.exit_code == 2 and "is a file" in res.output
    res = runner.invoke(app, ["compare", str(a), str(tmp_path / "missing")])
    assert res.exit_code == 2 and "report not found" in res.output


def test_compare_runs_without_torch(tmp_path):
    a = seg_report(tmp_path / "a", [0.6] * 10, [True] * 10)
    b = seg_report(tmp_path / "b", [0.5] * 10, [True] * 10)
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch.") or name == "torchvision":
                    raise ImportError("torch blocked for this test")
        sys.meta_path.insert(0, Block())
        from edge_bus.cli import app
        try:
            app(["compare", {str(a)!r}, {str(b)!r}])
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        assert "torch" not in sys.modules
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "A ahead" in result.stdout
