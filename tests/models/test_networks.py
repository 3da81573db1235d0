from __future__ import annotations

import pytest

from tests.models.base import ModelTester, torch

from edge_bus.models import create, list_models, model_task, roster


class TestVGG19(ModelTester):
    name = "vgg19"
    kwargs = {"hidden": 16}

    def test_onnx_export_legacy_exporter(self, tmp_path):
        """The deployment-friendly head exports with the TorchScript-based ONNX exporter."""
        onnx = pytest.importorskip("onnx")
        ort = pytest.importorskip("onnxruntime")
        model = self._create().eval()
        x = torch.randn(2, 1, 64, 64)
        path = tmp_path / "vgg19.onnx"
        torch.onnx.export(
            model, (x,), str(path), input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
        )
        onnx.checker.check_model(str(path))
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            expected = model(x).numpy()
        assert abs(got - expected).max() < 1e-3

    def test_batch_norm_variant(self):
        model = create("vgg19", num_classes=2, hidden=8, batch_norm=True)
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 2)


class TestResNet50(ModelTester):
    name = "resnet50"


class TestEfficientNetB0(ModelTester):
    name = "efficientnet_b0"
    num_classes = 2


class TestUNet(ModelTester):
    name = "unet"
    kwargs = {"width": 4}

    def test_width_sets_channels(self):
        narrow, wide = create("unet", width=4), create("unet", width=8)
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        assert count(wide) > 3 * count(narrow)

    def test_bad_input_size_says_what_to_do(self):
        with pytest.raises(ValueError, match="divisible by 16"):
            create("unet", width=4)(torch.randn(1, 1, 60, 64))


class TestUNetVGG19(ModelTester):
    name = "unet_vgg19"
    kwargs = {"width": 4}

    def test_structure(self):
        model = create("unet_vgg19", width=4)
        assert not any(isinstance(m, torch.nn.ReLU) for m in model.modules())
        assert any(isinstance(m, torch.nn.LeakyReLU) for m in model.modules())
        assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules()) == 4
        assert model.head.kernel_size == (1, 1)
        # 16 encoder convolutions as in VGG-19, mirrored by 2+2+4+4 decoder convolutions.
        n_conv = sum(type(m) is torch.nn.Conv2d and m.kernel_size == (3, 3) for m in model.modules())
        assert n_conv == 16 + 12


class TestDeepLabV3(ModelTester):
    name = "deeplabv3_resnet101"

    def test_aux_head_off(self):
        assert create("deeplabv3_resnet101").net.aux_classifier is None


def test_registry_lists_and_rejects():
    assert set(list_models("classification")) == {"vgg19", "resnet50", "efficientnet_b0"}
    assert set(list_models("segmentation")) == {"unet", "unet_vgg19", "deeplabv3_resnet101"}
    assert {"classical", "ensemble"} <= set(roster("segmentation"))
    assert model_task("classical") == "segmentation"
    with pytest.raises(ValueError, match="valid models: .*vgg19"):
        create("vgg91")
    with pytest.raises(ValueError, match="not a network"):
        create("ensemble")
    with pytest.raises(ValueError, match="no ImageNet weights"):
        create("unet", weights="imagenet")
