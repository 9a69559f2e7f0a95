"""ruDALL-E on pictext: the transformer, the Sber VQGAN and the YouTokenToMe tokenizer, each exact against Sber's
reference code (`rudalle`, `youtokentome`; installed --no-deps by the Makefile) on small random configs."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from pictext.checkpoint import CheckpointError
from pictext.dalle.convert import config_from_rudalle, from_rudalle, rudalle_to_pictext
from pictext.dalle.model import DALLE

from helpers import reference_module

# an 8x8 image grid: wider than the reach of ruDALL-E's 11x11 conv mask, so a wrong kernel shows
SMALL = dict(num_layers=4, hidden_size=64, num_attention_heads=4, text_seq_length=10, image_tokens_per_dim=8,
             vocab_size=50 + 10, image_vocab_size=24, embedding_dropout_prob=0.1, attention_dropout_prob=0.1,
             output_dropout_prob=0.1)  # fmt: skip


def reference(seed: int = 0, **params) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script's deprecation, in ruDALL-E's gelu_jit
        DalleModel = reference_module("rudalle.dalle.model").DalleModel
    torch.manual_seed(seed)
    model = DalleModel(device="cpu", **(SMALL | params)).eval()
    with torch.no_grad():  # its layer norms start at 1 and 0: random ones, so a swapped norm cannot pass
        for name, p in model.named_parameters():
            if "layernorm" in name or name.startswith("to_logits.0"):
                p.add_(torch.randn_like(p) * 0.3)
    return model


def stream(seed: int = 1, batch: int = 3, text_len: int = 10, image_tokens: int = 64):
    """Text ids with BOS, words, EOS and pads (0) of varying lengths, then image codes."""
    g = torch.Generator().manual_seed(seed)
    text = torch.zeros(batch, text_len, dtype=torch.long)
    for b in range(batch):
        n = 2 + b * 2
        text[b, 0], text[b, 1 : n + 1], text[b, n + 1] = 2, torch.randint(4, 50, (n,), generator=g), 3
    image = torch.randint(0, SMALL["image_vocab_size"], (batch, image_tokens), generator=g)
    return text, image


def reference_logits(model, text, image) -> torch.Tensor:
    input_ids = torch.cat([text, image], dim=1)
    total = model.total_seq_length
    mask = torch.tril(torch.ones(input_ids.shape[0], 1, total, total))
    with torch.no_grad():
        return model(input_ids, mask)[0]


@pytest.mark.parametrize("sandwich", [False, True], ids=["plain", "sandwich"])
@pytest.mark.parametrize("pb_relax", [False, True], ids=["softmax", "pb-relax"])
def test_logits_equal_rudalles(sandwich, pb_relax):
    params = dict(cogview_sandwich_layernorm=sandwich, cogview_pb_relax=pb_relax)
    ref = reference(**params)
    ours = from_rudalle(ref.state_dict(), **SMALL, **params)
    assert ours.config.layer_attention() == ["row", "column", "row", "conv"]
    text, image = stream()
    for n in (64, 23, 0):  # the whole stream, a prefix of the image, the text alone
        want = reference_logits(ref, text, image[:, :n])
        with torch.no_grad():
            got = ours.logits(text, image[:, :n])
        assert got.shape == want.shape == (3, 10 + n, 60 + 24)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_logits_equal_rudalles_without_its_sparse_masks():
    """Masks off: ruDALL-E's row, column and conv masks replaced by plain causal ones, pictext's layers all full."""
    ref = reference(seed=2, cogview_sandwich_layernorm=True)
    causal = torch.tril(torch.ones_like(ref.transformer.row_mask))
    for name in ("row_mask", "col_mask", "conv_mask"):
        setattr(ref.transformer, name, causal)
    config = dataclasses.replace(config_from_rudalle(**SMALL, cogview_sandwich_layernorm=True),
                                 attention=("full",), last_attention=None)  # fmt: skip
    ours = DALLE(config).eval()
    state = {k: v for k, v in ref.state_dict().items() if not k.endswith("_mask")}
    ours.load_state_dict(rudalle_to_pictext(state, config))
    text, image = stream(seed=3)
    with torch.no_grad():
        got = ours.logits(text, image)
    torch.testing.assert_close(got, reference_logits(ref, text, image), rtol=0, atol=1e-5)
    # and the masks matter: the sparse model on the same weights differs
    sparse = from_rudalle(reference(seed=2, cogview_sandwich_layernorm=True).state_dict(), **SMALL,
                          cogview_sandwich_layernorm=True)  # fmt: skip
    with torch.no_grad():
        assert (sparse.logits(text, image) - got).abs().max() > 1e-3


def test_a_file_is_read_as_data_and_a_wrong_mask_refused(tmp_path):
    ref = reference(seed=4, cogview_sandwich_layernorm=True, cogview_pb_relax=True)
    torch.save(ref.state_dict(), tmp_path / "pytorch_model.bin")
    params = dict(SMALL, cogview_sandwich_layernorm=True, cogview_pb_relax=True)
    ours = from_rudalle(tmp_path / "pytorch_model.bin", **params)
    text, image = stream(seed=5)
    with torch.no_grad():
        torch.testing.assert_close(ours.logits(text, image), reference_logits(ref, text, image), rtol=0, atol=1e-5)
    state = ref.state_dict()
    state["transformer.row_mask"] = torch.tril(torch.ones_like(state["transformer.row_mask"]))
    with pytest.raises(CheckpointError, match="row_mask"):
        from_rudalle(state, **params)
    with pytest.raises(CheckpointError, match="blocks|unexpected|missing|sandwich|ln_attn_out"):
        from_rudalle(ref.state_dict(), **SMALL)  # sandwich tensors in the file, none in the config


def test_unknown_parameters_and_v2_checkpoints_are_refused():
    with pytest.raises(ValueError, match="unknown ruDALL-E parameters.*num_heads"):
        config_from_rudalle(**SMALL, num_heads=4)
    with pytest.raises(ValueError, match="v2"):
        config_from_rudalle(**SMALL, hf_version="v2")
    with pytest.raises(ValueError, match="required"):
        config_from_rudalle(hidden_size=64)
