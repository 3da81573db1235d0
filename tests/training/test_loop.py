from __future__ import annotations

import json

import numpy as np
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
    rows = seg["per_image"]
    assert sum(r["lesion"] for r in rows) == seg["lesion_only"]["n"] and len(rows) == report["n"]
    assert np.mean([r["iou"] for r in rows if r["lesion"]]) == pytest.approx(seg["lesion_only"]["iou"])
    for group in ("all_images", "lesion_only"):
        lo, hi = report["intervals"][group]["iou"]
        assert lo <= seg[group]["iou"] <= hi and lo < hi
    assert f"{seg['all_images']['iou']:.4f} [{report['intervals']['all_images']['iou'][0]:.3f}," in (out / "report.md").read_text()


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
    classes = report["classification"]["classes"]
    rows = report["classification"]["per_image"]
    counted = np.zeros_like(np.array(matrix))
    for r in rows:
        counted[classes.index(r["truth"]), classes.index(r["predicted"])] += 1
        assert r["predicted"] == classes[int(np.argmax(r["probabilities"]))] and sum(r["probabilities"]) == pytest.approx(1, abs=1e-3)
    assert counted.tolist() == matrix
    lo, hi = report["intervals"]["weighted_f1"]
    assert lo <= report["classification"]["weighted_f1"] <= hi
    wrong = [r["id"] for r in rows if r["truth"] != r["predicted"]]
    assert all(i in (report_dir / "report.md").read_text() for i in wrong)


def test_resume_continues_to_the_same_weights(synthetic_pack, tmp_path):
    common = dict(model="unet", pack=synthetic_pack, epochs=3, batch_size=4, lr=3e-3, device="cpu",
                  model_kwargs={"width": 2}, progress=False)
    full = train(TrainConfig(out=tmp_path / "full", **common))
    part = tmp_path / "part"
    first = train(TrainConfig(out=part, max_epochs_this_run=1, **common))
    assert len(first.history) == 1
    assert first.stop_reason == "epoch_limit" and not first.stopped_early
    assert json.loads((part / "history.json").read_text())[-1]["stop_reason"] == "epoch_limit"
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


def _one_error_line(res) -> str:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.output
    return " ".join(res.output.split())


def test_cli_errors_are_one_line(tmp_path):
    res = runner.invoke(app, ["train", "vgg91", "--pack", str(tmp_path / "none.npz"), "--out", str(tmp_path)])
    text = _one_error_line(res)
    assert "unknown model 'vgg91'" in text and "vgg19" in text and "ensemble" in text
    res = runner.invoke(app, ["train", "unet", "--out", str(tmp_path)])
    assert "--pack" in _one_error_line(res)


@pytest.mark.parametrize(
    "args, message",
    [
        (["vgg91"], "unknown model 'vgg91'"),
        (["unet", "--weights", "imagenet"], "has no ImageNet weights"),
        (["unet", "--weights", "imagent"], "the only choice is 'imagenet'"),
        (["unet", "--init", "{tmp}/missing.pt"], "--init"),
        (["unet", "--mode", "mean"], "--mode apply to `edge-bus train ensemble` only"),
        (["ensemble", "--member", "{tmp}/a.pt"], "at least 2 --member"),
        (["ensemble", "--mode", "median"], "--mode 'median'"),
        (["unet_vgg19", "--weights", "imagenet", "--width", "32"], "unet_vgg19 ImageNet weights need width=64, got width=32"),
    ],
)
def test_cli_checks_options_before_packing(synthetic_busi, synthetic_split, tmp_path, args, message):
    out = tmp_path / "out"
    args = [a.format(tmp=tmp_path) for a in args]
    res = runner.invoke(app, ["train", *args, "--data", str(synthetic_busi), "--split", str(synthetic_split), "--out", str(out)])
    assert message in _one_error_line(res)
    assert not (out / "pack.npz").exists()


@pytest.mark.parametrize("option", [["--patience", "0"], ["--epochs", "0"], ["--batch-size", "0"], ["--seed", "-1"], ["--workers", "-1"]])
def test_cli_rejects_out_of_range_numbers_before_packing(synthetic_busi, synthetic_split, tmp_path, option):
    out = tmp_path / "out"
    res = runner.invoke(app, ["train", "unet", *option, "--data", str(synthetic_busi), "--split", str(synthetic_split), "--out", str(out)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert option[0] in res.output
    assert not (out / "pack.npz").exists()


def test_cli_shows_why_training_stopped(monkeypatch, tmp_path):
    from edge_bus.training import loop

    def stopped(cfg):
        return loop.TrainResult(tmp_path / "best.pt", tmp_path / "last_state.pt", [], 0.5, 3, stop_reason="patience")

    monkeypatch.setattr(loop, "train", stopped)
    res = runner.invoke(app, ["train", "unet", "--pack", str(tmp_path / "p.npz"), "--patience", "2", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "[stopped early: no val improvement in 2 epochs]" in " ".join(res.output.split())


def test_resolution_above_the_pack_is_refused(synthetic_pack, tmp_path):
    res = runner.invoke(app, ["train", "unet", "--pack", str(synthetic_pack), "--resolution", "128", "--out", str(tmp_path)])
    text = _one_error_line(res)
    assert "--resolution 128 is above the 64 px" in text and "--size 128" in text
    with pytest.raises(ConfigError, match="above the 64 px"):
        train(TrainConfig(model="unet", pack=synthetic_pack, out=tmp_path, resolution=96, device="cpu", progress=False))


def test_time_budget_stops_after_the_epoch_that_ends_past_it(synthetic_pack, tmp_path, monkeypatch):
    import time

    from edge_bus.training import loop

    assert loop._past_budget(1, time.perf_counter() - 61) and not loop._past_budget(1, time.perf_counter())
    assert not loop._past_budget(None, 0.0)
    checks = iter([False, False, True])  # the budget runs out during epoch 3
    monkeypatch.setattr(loop, "_past_budget", lambda max_minutes, started: next(checks))
    result = train(TrainConfig(model="unet", pack=synthetic_pack, out=tmp_path, epochs=20, batch_size=4, device="cpu",
                               model_kwargs={"width": 2}, max_minutes=2, progress=False))
    assert result.stop_reason == "time_budget" and not result.stopped_early
    assert len(result.history) == 3
    history = json.loads((tmp_path / "history.json").read_text())
    assert history[-1]["stop_reason"] == "time_budget" and all("stop_reason" not in h for h in history[:-1])
    assert load_checkpoint(result.best_checkpoint).train["max_minutes"] == 2


def test_evaluate_names_its_own_manifest_option(trained_unets, synthetic_busi, tmp_path):
    ckpt = str(trained_unets[0].best_checkpoint)
    res = runner.invoke(app, ["evaluate", ckpt, "--data", str(synthetic_busi), "--split", "split.json", "--out", str(tmp_path)])
    text = _one_error_line(res)
    assert "--split 'split.json': use train, val or test" in text and "--split-manifest" in text
    res = runner.invoke(app, ["evaluate", ckpt, "--data", str(synthetic_busi), "--out", str(tmp_path)])
    assert "--data DIR with --split-manifest MANIFEST" in _one_error_line(res)


def test_evaluate_warns_once_when_it_resizes_the_pack(trained_unets, synthetic_busi, synthetic_split, tmp_path):
    from edge_bus.data.pack import pack_split
    from edge_bus.data.split import load_split

    pack32 = pack_split(load_split(synthetic_split), synthetic_busi, tmp_path / "pack32.npz", size=32)
    res = runner.invoke(app, ["evaluate", str(trained_unets[0].best_checkpoint), "--pack", str(pack32), "--out", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert text.count("warning:") == 1 and "holds 32 px images and the model takes 64 px" in text
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["pack_resolution"] == 32 and report["resolution"] == 64 and len(report["warnings"]) == 1
    assert "**Warning:**" in (tmp_path / "e" / "report.md").read_text()
    res = runner.invoke(app, ["evaluate", str(trained_unets[0].best_checkpoint), "--data", str(synthetic_busi),
                              "--split-manifest", str(synthetic_split), "--out", str(tmp_path / "f")])
    assert res.exit_code == 0 and "warning:" not in res.output  # packed at the model's size


def test_best_overlays_are_lesion_images_and_worst_come_from_all():
    from edge_bus.training.evaluate import overlay_cases

    ious = np.array([1.0, 0.9, 1.0, 0.2, 0.0, 0.5])
    has_lesion = np.array([False, True, False, True, False, True])
    rows = overlay_cases(ious, has_lesion, 2)
    assert list(rows["best"]) == [1, 5]
    assert list(rows["worst"]) == [4, 3]
    assert list(overlay_cases(ious, np.zeros(6, bool), 2)["best"]) == []


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


def test_stopped_early_is_derived_from_the_stop_reason(tmp_path):
    from edge_bus.training.loop import TrainResult

    def result(reason):
        return TrainResult(tmp_path / "best.pt", tmp_path / "last_state.pt", [], 0.5, 3, stop_reason=reason)

    assert result("patience").stopped_early
    assert not any(result(r).stopped_early for r in ("time_budget", "epoch_limit", None))


def test_cli_trains_on_the_pack_resolve_pack_returns(synthetic_busi, synthetic_split, synthetic_pack, monkeypatch, tmp_path):
    import edge_bus.cli.train as train_cli
    from edge_bus.training import loop

    seen = {}

    def trained(cfg):
        seen["pack"] = cfg.pack
        return loop.TrainResult(tmp_path / "best.pt", tmp_path / "last_state.pt", [], 0.5, 1)

    monkeypatch.setattr(train_cli, "resolve_pack", lambda *args, **kwargs: synthetic_pack)  # not OUT/pack.npz
    monkeypatch.setattr(loop, "train", trained)
    res = runner.invoke(app, ["train", "unet", "--data", str(synthetic_busi), "--split", str(synthetic_split),
                              "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert seen["pack"] == synthetic_pack


def test_unknown_model_has_one_message_listing_the_roster(tmp_path):
    from edge_bus.models import create

    with pytest.raises(ValueError) as made:
        create("vgg91")
    with pytest.raises(ConfigError) as configured:
        TrainConfig(model="vgg91", pack=tmp_path / "p.npz", out=tmp_path, device="cpu").check()
    res = runner.invoke(app, ["train", "vgg91", "--pack", str(tmp_path / "p.npz"), "--out", str(tmp_path)])
    message = str(made.value)
    assert message.startswith("unknown model 'vgg91'; valid models: ") and "classical" in message and "ensemble" in message
    assert str(configured.value) == message and message in " ".join(res.output.split())


def test_train_config_checks_the_imagenet_width_before_any_work(tmp_path):
    cfg = TrainConfig(model="unet_vgg19", pack=tmp_path / "none.npz", out=tmp_path, device="cpu", weights="imagenet",
                      model_kwargs={"width": 32})
    with pytest.raises(ConfigError, match="--weights imagenet: unet_vgg19 ImageNet weights need width=64, got width=32"):
        cfg.check()
    TrainConfig(model="unet_vgg19", pack=tmp_path / "none.npz", out=tmp_path, device="cpu", model_kwargs={"width": 32}).check()


def test_training_broadcasts_nothing_extra_and_validation_errors_propagate_in_one_process(synthetic_pack, tmp_path, monkeypatch):
    from edge_bus.training import distributed, loop

    calls = []
    monkeypatch.setattr(distributed, "broadcast_from_main", lambda info, value: calls.append(value) or value)
    train(TrainConfig(model="unet", pack=synthetic_pack, out=tmp_path / "a", epochs=2, batch_size=4, device="cpu",
                      model_kwargs={"width": 2}, progress=False))
    assert calls == []  # one process: nothing to broadcast

    def broken(*args, **kwargs):
        raise KeyError("metric")

    monkeypatch.setattr(loop, "task_metrics", broken)
    with pytest.raises(KeyError, match="metric"):  # unchanged: no DDP wrapping in one process
        train(TrainConfig(model="unet", pack=synthetic_pack, out=tmp_path / "b", epochs=1, batch_size=4, device="cpu",
                          model_kwargs={"width": 2}, progress=False))


def test_evaluate_split_names_are_the_split_modules(monkeypatch):
    from edge_bus.cli.evaluate import check_split_name
    from edge_bus.data import split

    monkeypatch.setattr(split, "SPLITS", ("train", "val", "test", "holdout"))
    check_split_name("holdout")
    with pytest.raises(ConfigError, match="use train, val, test or holdout"):
        check_split_name("hold")


def test_evaluate_records_how_the_model_was_trained(trained_unets, synthetic_pack, tmp_path):
    from edge_bus.training.evaluate import evaluate

    report = evaluate(trained_unets[0].best_checkpoint, synthetic_pack, tmp_path / "e")
    saved = json.loads((tmp_path / "e" / "report.json").read_text())["train"]
    train_info = load_checkpoint(trained_unets[0].best_checkpoint).train
    assert saved == report["train"]
    assert saved == {k: train_info[k] for k in ("device", "amp", "epochs", "epochs_run", "best_epoch", "resolution",
                                                "world_size", "weights", "threads", "cpu", "cpu_capability", "pack_sha256")}
    assert saved["device"] == "cpu" and saved["amp"] is False and saved["resolution"] == 64
    assert saved["best_epoch"] == trained_unets[0].best_epoch
