"""PackedLinear: the same function as nn.Linear, prepacked only where no gradient is recorded."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pictext.nn import packed
from pictext.nn.packed import PackedLinear


def _layer(bias: bool = True) -> PackedLinear:
    torch.manual_seed(0)
    return PackedLinear(48, 80, bias=bias)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(32, 48), (3, 7, 48), (1, 48)])
def test_inference_matches_f_linear(shape: tuple[int, ...], bias: bool) -> None:
    layer = _layer(bias)
    x = torch.randn(shape)
    with torch.no_grad():
        got = layer(x)
        got_strided = layer(torch.randn(48, shape[0]).t())  # a non-contiguous input
    torch.testing.assert_close(got, F.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)
    assert got_strided.shape == (shape[0], 80)


def test_bfloat16_inference_matches_f_linear() -> None:
    layer = _layer().to(torch.bfloat16)
    x = torch.randn(16, 48, dtype=torch.bfloat16)
    with torch.no_grad():
        got = layer(x)
    torch.testing.assert_close(got.float(), F.linear(x, layer.weight, layer.bias).float(), atol=2e-2, rtol=2e-2)


def test_training_is_plain_f_linear_with_gradients() -> None:
    layer = _layer()
    x = torch.randn(5, 48, requires_grad=True)
    y = layer(x)
    assert torch.equal(y, F.linear(x, layer.weight, layer.bias))
    y.square().sum().backward()
    assert x.grad is not None and layer.weight.grad is not None and layer.bias.grad is not None


def test_a_changed_weight_is_packed_again() -> None:
    layer, x = _layer(), torch.randn(4, 48)
    with torch.no_grad():
        before = layer(x)
        layer.weight.mul_(2)  # in place: the version counter moves
        after, want = layer(x), F.linear(x, layer.weight, layer.bias)
        layer.load_state_dict({"weight": torch.ones(80, 48), "bias": torch.zeros(80)})
        ones = layer(x)
    torch.testing.assert_close(after, want, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(ones, x.sum(1, keepdim=True).expand(4, 80), atol=1e-5, rtol=1e-5)


def test_the_layer_copies_saves_and_keeps_nn_linears_state_dict() -> None:
    layer = _layer()
    with torch.no_grad():
        layer(torch.randn(2, 48))  # packs
    assert list(layer.state_dict()) == list(nn.Linear(48, 80).state_dict())
    clone = copy.deepcopy(layer)
    buffer = io.BytesIO()
    torch.save(layer, buffer)  # the whole module, pickled
    assert torch.equal(clone.weight, layer.weight)


def test_turned_off_it_is_f_linear_bit_for_bit() -> None:
    layer, x = _layer(), torch.randn(9, 48)
    old = packed.set_prepacking(False)
    try:
        with torch.no_grad():
            assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    finally:
        packed.set_prepacking(old)


def test_a_refused_kernel_falls_back_to_f_linear_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> torch.Tensor:
        raise RuntimeError("no oneDNN kernel for this CPU")

    monkeypatch.setattr(packed, "_product", refuse)
    monkeypatch.setattr(packed, "_enabled", True)
    layer, x = _layer(), torch.randn(3, 48)
    with torch.no_grad():
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    assert not packed.prepacking_enabled()
