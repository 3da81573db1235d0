"""One tester for every network: build, forward and backward at 64x64 (batch 2), output shape,
TorchScript trace that reproduces the eager output. Each model's test class sets a few fields."""

from __future__ import annotations

import io

import pytest

torch = pytest.importorskip("torch")

from edge_bus.models import create, model_task  # noqa: E402

SIZE = 64
BATCH = 2


class ModelTester:
    name: str = ""
    kwargs: dict = {}
    num_classes: int = 3

    def _create(self):
        torch.manual_seed(0)
        task = model_task(self.name)
        return create(self.name, num_classes=self.num_classes if task == "classification" else None, **self.kwargs)

    def _expected_shape(self):
        if model_task(self.name) == "classification":
            return (BATCH, self.num_classes)
        return (BATCH, 1, SIZE, SIZE)

    def test_forward_backward_shape(self):
        model = self._create().train()
        x = torch.randn(BATCH, 1, SIZE, SIZE)
        y = model(x)
        assert tuple(y.shape) == self._expected_shape()
        assert torch.isfinite(y).all()
        y.float().pow(2).mean().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None for g in grads), "some parameters got no gradient"
        assert any(g.abs().sum() > 0 for g in grads)

    def test_first_conv_takes_one_channel(self):
        model = self._create()
        first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        assert first.in_channels == 1

    def test_torchscript_trace_matches_eager(self):
        model = self._create().eval()
        x = torch.randn(BATCH, 1, SIZE, SIZE)
        with torch.no_grad():
            expected = model(x)
            traced = torch.jit.trace(model, x, check_trace=False)
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer)
            buffer.seek(0)
            loaded = torch.jit.load(buffer)
            got = loaded(x)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
