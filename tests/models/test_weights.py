from __future__ import annotations

import urllib.error

import pytest

torch = pytest.importorskip("torch")

from edge_bus.errors import CheckpointError  # noqa: E402
from edge_bus.models import create  # noqa: E402
from edge_bus.models.weights import single_channel_conv  # noqa: E402


def test_imagenet_offline_names_the_file_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(CheckpointError) as info:
        create("resnet50", weights="imagenet")
    message = str(info.value)
    filename = calls[0].rsplit("/", 1)[-1]
    assert filename.endswith(".pth") and filename in message
    assert str(tmp_path / "hub") in message and "checkpoints" in message


def test_imagenet_weights_load_with_summed_first_conv(monkeypatch):
    """With the file 'cached' (faked), ImageNet weights load and conv1 is the channel sum."""
    from torchvision.models import resnet50

    source = resnet50(weights=None).state_dict()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: source)
    model = create("resnet50", weights="imagenet", num_classes=3)
    torch.testing.assert_close(model.conv1.weight, source["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(model.layer4[0].conv1.weight, source["layer4.0.conv1.weight"])
    assert model.fc.out_features == 3


def test_unet_vgg19_imagenet_fills_the_encoder_and_leaves_the_decoder_fresh(monkeypatch):
    """ImageNet has no decoder weights: only the encoder must be covered (faked, cached file)."""
    from torchvision.models import vgg19_bn

    source = vgg19_bn(weights=None).state_dict()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: source)
    torch.manual_seed(0)
    fresh = create("unet_vgg19").state_dict()
    torch.manual_seed(0)
    model = create("unet_vgg19", weights="imagenet")
    state = model.state_dict()
    torch.testing.assert_close(state["encoder.0.weight"], source["features.0.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(state["encoder.49.weight"], source["features.49.weight"])
    torch.testing.assert_close(state["encoder.50.running_var"], source["features.50.running_var"])
    for key in ("up.0.weight", "dec.3.0.weight", "head.weight"):
        torch.testing.assert_close(state[key], fresh[key])


def test_unet_vgg19_imagenet_refuses_source_weights_missing_an_encoder_key(monkeypatch):
    """`covers` names the encoder: a key missing there is an error even though the decoder may start fresh."""
    from torchvision.models import vgg19_bn

    source = vgg19_bn(weights=None).state_dict()
    del source["features.49.weight"]
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: source)
    with pytest.raises(CheckpointError, match=r"do not cover 1 parameters, e.g. \['encoder.49.weight'\]"):
        create("unet_vgg19", weights="imagenet")


def test_unet_vgg19_imagenet_width_is_checked_before_the_weights_are_fetched(monkeypatch):
    from edge_bus.models.registry import check_imagenet_kwargs

    def fetched(*args, **kwargs):
        raise AssertionError("the weights must not be fetched for a width they cannot fit")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fetched)
    with pytest.raises(ValueError, match="unet_vgg19 ImageNet weights need width=64, got width=32"):
        create("unet_vgg19", weights="imagenet", width=32)
    with pytest.raises(ValueError, match="need width=64"):
        check_imagenet_kwargs("unet_vgg19", {"width": 16})
    check_imagenet_kwargs("unet_vgg19", {})  # the default width fits
    check_imagenet_kwargs("resnet50", {"width": 16})  # no such constraint
    assert create("unet_vgg19", width=4) is not None  # without ImageNet weights any width


def test_single_channel_conv_equals_gray_copied_to_rgb():
    conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    gray = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(single_channel_conv(conv)(gray), conv(gray.repeat(1, 3, 1, 1)), rtol=1e-5, atol=1e-5)


def test_init_loads_a_state_dict(tmp_path):
    torch.manual_seed(1)
    source = create("unet", width=4)
    path = tmp_path / "init.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)
    model = create("unet", width=4, init=str(path))
    for (name, a), b in zip(model.state_dict().items(), source.state_dict().values()):
        assert torch.equal(a, b), name


def test_init_wrong_model_or_file(tmp_path):
    path = tmp_path / "init.pt"
    torch.save(create("unet", width=4).state_dict(), path)
    with pytest.raises(CheckpointError, match="does not fit"):
        create("unet", width=8, init=str(path))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="bad.pt"):
        create("unet", width=4, init=str(bad))



def test_truncated_init_file_gives_one_line_error_naming_it(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(create("unet", width=4).state_dict(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError) as err:
        create("unet", width=4, init=str(truncated))
    msg = str(err.value)
    assert msg.startswith(f"{truncated}: not a readable state dict (") and "\n" not in msg
