"""--encoder-from (the VGG-19 encoder between the modified U-Net and the classifier) and --init:
what loads, what is refused, and what the checkpoint records."""

from __future__ import annotations

import dataclasses
import json

import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from edge_bus.cli import app  # noqa: E402
from edge_bus.data.pack import load_pack  # noqa: E402
from edge_bus.errors import CheckpointError, ConfigError  # noqa: E402
from edge_bus.models import create  # noqa: E402
from edge_bus.models.transfer import transfer_encoder  # noqa: E402
from edge_bus.training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from edge_bus.training.loop import TrainConfig, train  # noqa: E402
from edge_bus.training.warm_start import UNRECORDED, init_from, load_encoder_from  # noqa: E402

runner = CliRunner()


def _segmenter_checkpoint(path, split_hash, seed=3):
    torch.manual_seed(seed)
    model = create("unet_vgg19")
    save_checkpoint(path, model, model="unet_vgg19", task="segmentation", classes=["benign", "malignant", "normal"],
                    preprocessing={"size": 64}, split_hash=split_hash, metrics={"val": {"score": 0.25, "iou": 0.25}})
    return model


def test_the_modified_unet_encoder_becomes_the_classifier_features_and_back():
    torch.manual_seed(0)
    segmenter = create("unet_vgg19").eval()
    torch.manual_seed(1)
    classifier = create("vgg19", num_classes=3, batch_norm=True).eval()
    head_before = {k: v.clone() for k, v in classifier.state_dict().items() if k.startswith("classifier.")}
    loaded = transfer_encoder(classifier, "vgg19", "unet_vgg19", segmenter.state_dict())
    assert loaded == len([k for k in segmenter.state_dict() if k.startswith("encoder.")]) > 50
    encoder = {k[len("encoder."):]: v for k, v in segmenter.state_dict().items() if k.startswith("encoder.")}
    for k, v in encoder.items():
        assert torch.equal(classifier.state_dict()["features." + k], v), k
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        # Layer for layer the same maps, up to ReLU against LeakyReLU(0.01): close, not equal (a shifted
        # mapping would differ everywhere). The classifier's features end with a max-pool the encoder lacks.
        ours, theirs = classifier.features[:-1](x), segmenter.encoder(x)
        torch.testing.assert_close(ours, theirs, rtol=0.02, atol=0.02)
        assert not torch.equal(ours, theirs)
    for k, v in head_before.items():  # the head keeps its own initialisation
        assert torch.equal(classifier.state_dict()[k], v), k

    torch.manual_seed(2)
    other = create("unet_vgg19").eval()
    decoder_before = {k: v.clone() for k, v in other.state_dict().items() if not k.startswith("encoder.")}
    transfer_encoder(other, "unet_vgg19", "vgg19", classifier.state_dict())
    for k, v in encoder.items():
        assert torch.equal(other.state_dict()["encoder." + k], v), k
    with torch.no_grad():
        torch.testing.assert_close(other.encoder(x), segmenter.encoder(x))  # both LeakyReLU: equal
    for k, v in decoder_before.items():
        assert torch.equal(other.state_dict()[k], v), k


def test_encoders_that_do_not_fit_are_refused_with_the_way_out():
    segmenter = create("unet_vgg19")
    with pytest.raises(CheckpointError, match="batch_norm=true"):
        transfer_encoder(create("vgg19", num_classes=3), "vgg19", "unet_vgg19", segmenter.state_dict())
    with pytest.raises(CheckpointError, match="batch_norm=true"):  # a narrower U-Net: shapes differ
        transfer_encoder(create("vgg19", num_classes=3, batch_norm=True), "vgg19", "unet_vgg19", create("unet_vgg19", width=8).state_dict())
    with pytest.raises(CheckpointError, match="'unet' shares no encoder"):
        transfer_encoder(create("vgg19", num_classes=3, batch_norm=True), "vgg19", "unet", create("unet", width=4).state_dict())


def test_encoder_from_a_checkpoint_checks_its_split_and_records_it(synthetic_pack, tmp_path):
    split = load_pack(synthetic_pack).split_hash
    source = _segmenter_checkpoint(tmp_path / "seg.pt", split)
    classifier = create("vgg19", num_classes=3, batch_norm=True)
    record = load_encoder_from(classifier, "vgg19", tmp_path / "seg.pt", split, synthetic_pack)
    assert record["model"] == "unet_vgg19" and record["tensors"] > 50
    assert record["weights_sha256"] == load_checkpoint(tmp_path / "seg.pt").weights_sha256
    assert record["source_val"] == {"score": 0.25, "iou": 0.25}
    assert torch.equal(classifier.features[0].weight, source.encoder[0].weight)

    _segmenter_checkpoint(tmp_path / "other.pt", "e" * 64)
    with pytest.raises(ConfigError, match="split eeeeeeeeeeee.*val or test images"):
        load_encoder_from(create("vgg19", num_classes=3, batch_norm=True), "vgg19", tmp_path / "other.pt", split, synthetic_pack)
    _segmenter_checkpoint(tmp_path / "unrecorded.pt", "")
    with pytest.raises(ConfigError, match="records no split hash"):
        load_encoder_from(create("vgg19", num_classes=3, batch_norm=True), "vgg19", tmp_path / "unrecorded.pt", split, synthetic_pack)


def test_init_from_an_edge_bus_checkpoint_of_another_split_is_refused(synthetic_pack, tmp_path):
    split = load_pack(synthetic_pack).split_hash
    torch.manual_seed(4)
    net = create("unet", width=4)
    save_checkpoint(tmp_path / "same.pt", net, model="unet", task="segmentation", classes=["a", "b"], preprocessing={"size": 64},
                    split_hash=split)
    save_checkpoint(tmp_path / "other.pt", net, model="unet", task="segmentation", classes=["a", "b"], preprocessing={"size": 64},
                    split_hash="d" * 64)
    torch.save(net.state_dict(), tmp_path / "raw.pt")

    fresh = create("unet", width=4)
    assert init_from(fresh, tmp_path / "same.pt", split, synthetic_pack)["kind"] == "edge-bus checkpoint"
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), net.state_dict().values()))
    assert init_from(create("unet", width=4), tmp_path / "raw.pt", split, synthetic_pack)["kind"] == UNRECORDED
    with pytest.raises(ConfigError, match="dddddddddddd"):
        init_from(create("unet", width=4), tmp_path / "other.pt", split, synthetic_pack)
    altered = torch.load(tmp_path / "same.pt", weights_only=True)
    first = next(iter(altered["state_dict"]))
    altered["state_dict"][first] = altered["state_dict"][first] + 1
    torch.save(altered, tmp_path / "altered.pt")
    with pytest.raises(CheckpointError, match="do not match the fingerprint"):
        init_from(create("unet", width=4), tmp_path / "altered.pt", split, synthetic_pack)


def test_training_from_an_encoder_records_where_it_came_from(synthetic_pack, tmp_path):
    split = load_pack(synthetic_pack).split_hash
    _segmenter_checkpoint(tmp_path / "seg.pt", split)
    cfg = TrainConfig(model="vgg19", pack=synthetic_pack, out=tmp_path / "clf", epochs=2, batch_size=8, lr=1e-4, device="cpu",
                      resolution=32, model_kwargs={"batch_norm": True}, encoder_from=str(tmp_path / "seg.pt"), progress=False,
                      max_epochs_this_run=1)
    result = train(cfg)
    record = load_checkpoint(result.best_checkpoint).train
    assert record["encoder_from"] == str(tmp_path / "seg.pt")
    assert record["encoder_source"]["weights_sha256"] == load_checkpoint(tmp_path / "seg.pt").weights_sha256
    assert "init_source" not in record
    # resuming keeps the record (the weights come from the state) and refuses another start
    with pytest.raises(ConfigError, match="encoder_from"):
        train(dataclasses.replace(cfg, resume=True, encoder_from=None))
    resumed = train(dataclasses.replace(cfg, resume=True, max_epochs_this_run=None))
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    state = torch.load(resumed.last_state, weights_only=True)
    assert json.loads(state["starts"])["encoder_source"] == record["encoder_source"]
    assert load_checkpoint(resumed.best_checkpoint).train["encoder_source"] == record["encoder_source"]
    res = runner.invoke(app, ["evaluate", str(result.best_checkpoint), "--pack", str(synthetic_pack), "--split", "val",
                              "--out", str(tmp_path / "report")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["train"]["encoder_source"]["model"] == "unet_vgg19"
    assert f"encoder started from: unet_vgg19 `{tmp_path / 'seg.pt'}`" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["unet", "--encoder-from", "{tmp}/seg.pt"], "model 'unet' shares no encoder"),
        (["vgg19", "--encoder-from", "{tmp}/seg.pt", "--init", "{tmp}/seg.pt"], "use one of them"),
        (["vgg19", "--model-arg", "batch_norm=true", "--encoder-from", "{tmp}/missing.pt"],
         "--encoder-from {tmp}/missing.pt: no such file"),
        (["vgg19", "--encoder-from", "{tmp}/seg.pt"], "vgg19 with batch_norm=False has no VGG-19 batch-norm encoder"),
        (["unet_vgg19", "--encoder-from", "{tmp}/seg.pt", "--width", "32"], "unet_vgg19 with width=32 has no"),
        (["classical", "--init", "{tmp}/seg.pt"], "--init start a network's weights; 'classical' is fitted"),
    ],
)
def test_cli_checks_encoder_from_before_packing(synthetic_busi, synthetic_split, tmp_path, args, message):
    (tmp_path / "seg.pt").write_bytes(b"PK\x03\x04")  # exists; the option checks come first
    out = tmp_path / "out"
    args = [a.format(tmp=tmp_path) for a in args]
    res = runner.invoke(app, ["train", *args, "--data", str(synthetic_busi), "--split", str(synthetic_split), "--out", str(out)])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert message.format(tmp=tmp_path) in " ".join(res.output.split())
    assert not (out / "pack.npz").exists()
