from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from edge_bus.cli import app
from edge_bus.errors import ConfigError
from edge_bus.training.checkpoint import load_checkpoint
from edge_bus.training.loop import TrainConfig, train

runner = CliRunner()


def test_short_training_lowers_loss_and_writes_checkpoint(trained_unets, synthetic_pack):
    result = trained_unets[0]
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 5
    assert min(losses[-2:]) < losses[0]
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt.model == "unet" and ckpt.task == "segmentation" and ckpt.model_kwargs == {"width": 4}
    assert ckpt.preprocessing.size == 64
    assert ckpt.train["epochs"] == 5 and ckpt.train["best_epoch"] == result.best_epoch
    assert ckpt.metrics["val"]["score"] == pytest.approx(result.best_score)
    model = ckpt.build_model()
    assert model(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)


def test_evaluate_cli_reads_the_checkpoint(trained_unets, synthetic_pack, tmp_path):
    out = tmp_path / "eval"
    res = runner.invoke(app, ["evaluate", str(trained_unets[0].best_checkpoint), "--pack", str(synthetic_pack),
                              "--split", "test", "--out", str(out)])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    seg = report["segmentation"]
    assert 0.0 <= seg["all_images"]["iou"] <= 1.0 and seg["lesion_only"]["n"] + seg["empty_only"]["n"] == report["n"]
    assert (out / "overlays.png").stat().st_size > 1000
    assert "mean IoU" in (out / "report.md").read_text()


def test_cli_trains_and_evaluates_a_classifier(synthetic_busi, synthetic_split, tmp_path):
    out = tmp_path / "vgg"
    res = runner.invoke(app, ["train", "vgg19", "--data", str(synthetic_busi), "--split", str(synthetic_split),
                              "--resolution", "64", "--epochs", "2", "--batch-size", "2", "--device", "cpu",
                              "--model-arg", "hidden=16", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "pack.npz").is_file()
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt.task == "classification" and ckpt.classes == ["benign", "malignant", "normal"]
    assert ckpt.model_kwargs == {"hidden": 16} and ckpt.preprocessing.size == 64
    report_dir = tmp_path / "report"
    res = runner.invoke(app, ["evaluate", str(out / "best.pt"), "--data", str(synthetic_busi), "--split-manifest",
                              str(synthetic_split), "--split", "val", "--out", str(report_dir)])
    assert res.exit_code == 0, res.output
    report = json.loads((report_dir / "report.json").read_text())
    matrix = report["classification"]["confusion_matrix"]
    assert sum(map(sum, matrix)) == report["n"]
    assert (report_dir / "confusion_matrix.png").is_file()
    assert "Weighted F1" in (report_dir / "report.md").read_text()


def test_resume_continues_to_the_same_weights(synthetic_pack, tmp_path):
    common = dict(model="unet", pack=synthetic_pack, epochs=3, batch_size=4, lr=3e-3, device="cpu",
                  model_kwargs={"width": 2}, progress=False)
    full = train(TrainConfig(out=tmp_path / "full", **common))
    part = tmp_path / "part"
    first = train(TrainConfig(out=part, max_epochs_this_run=1, **common))
    assert len(first.history) == 1
    resumed = train(TrainConfig(out=part, resume=True, **common))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    a = torch.load(full.last_state, weights_only=True)["model"]
    b = torch.load(resumed.last_state, weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_resume_refuses_changed_settings(synthetic_pack, tmp_path):
    common = dict(model="unet", pack=synthetic_pack, batch_size=4, device="cpu", model_kwargs={"width": 2}, progress=False)
    train(TrainConfig(out=tmp_path, epochs=1, **common))
    with pytest.raises(ConfigError, match="epochs"):
        train(TrainConfig(out=tmp_path, epochs=2, resume=True, **common))


def test_cli_errors_are_one_line(tmp_path):
    res = runner.invoke(app, ["train", "vgg91", "--pack", str(tmp_path / "none.npz"), "--out", str(tmp_path)])
    assert res.exit_code == 2
    res = runner.invoke(app, ["train", "unet", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--pack" in res.output


def test_non_terminal_output_gets_a_plain_line_per_epoch(synthetic_pack, tmp_path, capsys):
    import re

    result = train(TrainConfig(model="unet", pack=synthetic_pack, out=tmp_path, epochs=2, batch_size=4, device="cpu",
                               model_kwargs={"width": 2}, progress=True))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == len(result.history) == 2
    pattern = r"epoch (\d)/2: train loss (\d+\.\d{4}), val score (\d\.\d{4}), \d+\.\d s"
    for line, record in zip(lines, result.history):
        m = re.match(pattern, line)
        assert m, line
        assert int(m.group(1)) == record["epoch"] and abs(float(m.group(2)) - record["train_loss"]) < 1e-4
    assert json.loads((tmp_path / "history.json").read_text()) == json.loads(json.dumps(result.history))


def test_progress_on_a_terminal_draws_a_bar_and_off_says_nothing(tmp_path):
    import io

    from edge_bus.training.progress import Progress, iterate

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    with Progress("job", total=2, stream=tty) as bar:
        assert bar.live
        bar.advance()
        bar.log("hello")
    assert "hello" in tty.getvalue()
    quiet = io.StringIO()
    assert list(iterate([1, 2], "search", enabled=False, stream=quiet)) == [1, 2] and quiet.getvalue() == ""
    plain = io.StringIO()
    list(iterate([1, 2], "search", stream=plain))
    assert plain.getvalue().splitlines()[-1].startswith("search: 2/2 done")
