"""A linear layer that, for inference on CPU, multiplies by a copy of its weight prepacked for oneDNN.

Training and anything that records gradients go through `F.linear` unchanged. Without gradients, on CPU, in
float32 or bfloat16 and outside autocast, the weight is reordered once into oneDNN's blocked layout and kept
beside the module until the weight changes (its storage, dtype or version counter). The product is then
`torch.ops.mkldnn._linear_pointwise`, the kernel torch.compile's CPU "freezing" path emits for a linear
layer; here it is called directly, without compiling anything.

Why by hand: at the small products DALL-E's sampling step is made of, the prepacked product is about twice as
fast as `F.linear` (bench/README.md, docs/measurements.md). No library offers a prepacked linear for eager
inference: torch's own `MkldnnLinear` (`torch.utils.mkldnn`) wants oneDNN tensors in and out, whose conversions
cost more than they save.

The results agree with `F.linear` to float rounding (about 1e-6 relative in float32), not bit for bit.
Where oneDNN is missing or refuses the call (another CPU architecture, an old build), the layer falls back to
`F.linear` for the rest of the process.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

_PACKABLE = (torch.float32, torch.bfloat16)
# Prepacked weights by layer; outside the layer, as oneDNN's opaque tensors can be neither deep-copied nor
# pickled. An entry goes when its layer does.
_PACKS: weakref.WeakKeyDictionary[PackedLinear, tuple[tuple[int, int, torch.dtype], torch.Tensor]]
_PACKS = weakref.WeakKeyDictionary()
_enabled = torch.backends.mkldnn.is_available()


def prepacking_enabled() -> bool:
    return _enabled


def set_prepacking(enabled: bool) -> bool:
    """Turn prepacked inference on or off for the process (e.g. to compare with `F.linear`); returns the old
    setting. Turning it on where oneDNN is missing has no effect."""
    global _enabled
    old, _enabled = _enabled, enabled and torch.backends.mkldnn.is_available()
    return old


class PackedLinear(nn.Linear):
    """`nn.Linear` (same parameters, same state dict) with prepacked inference on CPU; see the module doc."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if (
            not _enabled
            or torch.is_grad_enabled()
            or x.device.type != "cpu"
            or x.dtype != w.dtype
            or w.dtype not in _PACKABLE
            or torch.is_autocast_enabled("cpu")
        ):
            return F.linear(x, w, self.bias)
        return _packed_linear(self, x)


def _packed_linear(layer: PackedLinear, x: torch.Tensor) -> torch.Tensor:
    global _enabled
    w, bias = layer.weight, layer.bias
    key = (w.data_ptr(), w._version, w.dtype)
    entry = _PACKS.get(layer)
    try:
        if entry is None or entry[0] != key:
            entry = key, _reorder(w.detach())
            _PACKS[layer] = entry
        return _product(x, entry[1], bias)
    except (RuntimeError, AttributeError, NotImplementedError):  # no such op or kernel in this build or CPU
        _enabled = False
        return F.linear(x, w, bias)


def _reorder(w: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(w, None)  # no batch-size hint: any number of rows


def _product(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")  # no fused activation
