"""Every named architecture builds; tiny ones run forward and backward with a gradient for every parameter."""

from __future__ import annotations

import pytest
import torch

from pictext.clip import CLIP, CLIP_CONFIGS, get_config
from pictext.clip.model import CLIPConfig
from pictext.config import from_dict, to_dict

# Parameter counts of OpenAI's released models (from their state dicts), as a check on each config.
EXPECTED_MILLIONS = {
    "RN50": 102.0,
    "RN101": 119.7,
    "RN50x4": 178.3,
    "RN50x16": 290.98,
    "RN50x64": 623.3,
    "ViT-B/32": 151.3,
    "ViT-B/16": 149.6,
    "ViT-L/14": 427.6,
    "ViT-L/14-336": 427.9,
}


@pytest.mark.parametrize("name", [n for n in CLIP_CONFIGS if not n.startswith("tiny")])
def test_named_configs_have_openai_sizes(name):
    with torch.device("meta"):
        model = CLIP(CLIP_CONFIGS[name])
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert millions == pytest.approx(EXPECTED_MILLIONS[name], rel=0.01)


@pytest.mark.parametrize("name", ["tiny-vit", "tiny-rn"])
def test_tiny_forward_backward(name):
    torch.manual_seed(0)
    cfg = get_config(name)
    model = CLIP(cfg)
    pixels = torch.randn(3, 3, cfg.vision.image_size, cfg.vision.image_size)
    tokens = torch.randint(1, cfg.text.eot_token_id, (3, 16))
    tokens[:, 5] = cfg.text.eot_token_id
    logits = model(pixels, tokens)
    assert logits.shape == (3, 3) and torch.isfinite(logits).all()
    logits.logsumexp(dim=1).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert no_grad == []


def test_config_roundtrip_and_unknown_keys():
    cfg = get_config("RN50")
    assert from_dict(CLIPConfig, to_dict(cfg)) == cfg
    bad = to_dict(cfg) | {"dropout": 0.1}
    with pytest.raises(ValueError, match="unknown CLIPConfig keys \\['dropout'\\]"):
        from_dict(CLIPConfig, bad)
    with pytest.raises(ValueError, match="activation"):
        get_config("ViT-B/32", activation="relu")


def test_text_longer_than_context_is_refused():
    model = CLIP(get_config("tiny-vit"))
    with pytest.raises(ValueError, match="token ids must be"):
        model.encode_text(torch.zeros(1, 17, dtype=torch.long))


def test_a_fresh_resnet_tower_tells_pictures_apart():
    """OpenAI's init zeroes the last BatchNorm of each residual branch, not the stem's bn3 (named alike): zeroing
    that one too made every picture embed the same and training sat at chance."""
    from pictext.clip.model import CLIP, CLIPConfig, TextConfig, VisionConfig

    torch.manual_seed(0)
    vision = VisionConfig(image_size=64, layers=(1, 1, 1, 1), width=16, patch_size=None, head_width=32)
    text = TextConfig(context_length=8, vocab_size=64, width=32, heads=2, layers=1, eot_token_id=63)
    model = CLIP(CLIPConfig(embed_dim=32, vision=vision, text=text)).train()
    assert model.visual.bn3.weight.abs().min() > 0
    assert all(p.abs().max() == 0 for n, p in model.visual.named_parameters() if n.endswith(".bn3.weight"))
    e = model.encode_image(torch.randn(8, 3, 64, 64), normalize=True)
    off_diagonal = (e @ e.T)[~torch.eye(8, dtype=torch.bool)]
    assert off_diagonal.max() < 0.999
