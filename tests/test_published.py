"""The registry of published weights, proved without the weights: for every entry, the reference code's model
(open_clip, transformers, taming-transformers, OpenAI's dall_e) built at the published size on the meta
device, and pictext's loader mapping its state-dict names and shapes onto pictext's model exactly: every
tensor used, none left over, none missing. Parameter counts are printed for README's table."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from pictext import published
from pictext.clip.convert import _IGNORED_KEYS, hf_to_openai, infer_config
from pictext.clip.model import CLIP, CLIPConfig
from pictext.config import from_dict, to_dict

ENTRIES = published.registry()


def shapes(sd: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def meta_state(build) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build().state_dict()


def reference_state(item: published.Published) -> dict[str, torch.Tensor]:
    """The reference implementation's state dict at the published size, in the names its files use."""
    ref = item.reference
    if "open_clip" in ref:
        import open_clip

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = open_clip.create_model(ref["open_clip"], force_quick_gelu=ref["quick_gelu"], device="meta")
        return model.state_dict()
    if "transformers" in ref:
        from transformers import CLIPConfig as HFConfig
        from transformers import CLIPModel

        return meta_state(lambda: CLIPModel(HFConfig(**ref["transformers"])))
    if "taming" in ref:
        return _taming_state(ref["taming"])
    if "dall_e" in ref:
        import dall_e

        encoder, decoder = meta_state(dall_e.Encoder), meta_state(dall_e.Decoder)
        return {f"encoder.{k}": v for k, v in encoder.items()} | {f"decoder.{k}": v for k, v in decoder.items()}
    raise AssertionError(f"{item.name}: no reference")


def _taming_state(params: dict) -> dict[str, torch.Tensor]:
    """taming's VQModel parts (its Lightning class needs pytorch-lightning; its modules need only torch)."""
    from taming.modules.diffusionmodules.model import Decoder, Encoder
    from taming.modules.vqvae.quantize import VectorQuantizer

    dd = params["ddconfig"]

    def parts() -> torch.nn.ModuleDict:
        return torch.nn.ModuleDict({
            "encoder": Encoder(**dd), "decoder": Decoder(**dd),
            "quantize": VectorQuantizer(params["n_embed"], params["embed_dim"], beta=0.25),
            "quant_conv": torch.nn.Conv2d(dd["z_channels"], params["embed_dim"], 1),
            "post_quant_conv": torch.nn.Conv2d(params["embed_dim"], dd["z_channels"], 1),
        })  # fmt: skip

    return meta_state(parts)


def pictext_state(item: published.Published, ref: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """(pictext's model's state dict on meta, the reference's mapped by pictext's loader for this format)."""
    if item.family == "clip":
        if item.format == "huggingface":
            config, mapped = hf_to_openai(
                ref, {"text_config": {"hidden_act": "quick_gelu"}, **item.reference["transformers"]}
            )
        else:
            mapped = {k: v for k, v in ref.items() if k not in _IGNORED_KEYS}
            config = infer_config(mapped, item.activation)
            inferred = json.loads(json.dumps(to_dict(config)))
            assert inferred == item.config, f"{item.name}: the registry's config is not what the loader infers"
        config = from_dict(CLIPConfig, to_dict(config))  # within pictext's bounds for a file's config
        return meta_state(lambda: CLIP(config)), mapped
    if item.family == "vqgan":
        from pictext.vqgan.convert import config_from_taming
        from pictext.vqgan.model import VQGAN

        config = config_from_taming(item.reference["taming"], "taming.models.vqgan.VQModel")
        return meta_state(lambda: VQGAN(config)), ref
    if item.family == "dvae":
        from pictext.dalle.dvae import DVAE, DVAEConfig

        config = from_dict(DVAEConfig, item.reference["dall_e"])
        return meta_state(lambda: DVAE(config)), ref
    raise AssertionError(item.family)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_the_reference_at_its_published_size_maps_exactly_onto_pictexts_model(name):
    item = ENTRIES[name]
    ours, mapped = pictext_state(item, reference_state(item))
    assert shapes(ours) == shapes(mapped)  # every tensor used, none left over, none missing, same shapes
    params = sum(v.numel() for v in ours.values())
    print(f"{name}: {params / 1e6:.1f} M parameters")
    assert params > 10_000_000  # published sizes, not a tiny stand-in


def test_every_entry_is_complete_and_checked():
    assert {"openai/ViT-B-32", "openai/RN50", "laion/ViT-B-32", "openai/clip-vit-base-patch32",
            "taming/imagenet-f16-16384", "taming/imagenet-f16-1024", "openai/dvae"} <= set(ENTRIES)  # fmt: skip
    for name, item in ENTRIES.items():
        assert item.files and item.licence and item.approx_mb > 0, name
        for spec in item.files:
            assert (spec.url is None) != (spec.hub is None), f"{name}: {spec.name} needs a url or a hub repo"
            assert spec.max_bytes >= min(item.approx_mb * 1_000_000, 1 << 20), name
            if spec.url is not None and "openaipublic" in spec.url:  # OpenAI's URLs carry their SHA-256
                assert spec.sha256 is not None and spec.sha256 in spec.url, name
