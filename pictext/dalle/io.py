"""A DALL-E as one self-describing file: the transformer, its text tokenizer and its image tokenizer together.

The image tokenizer's weights travel inside the file (under `image_tokenizer.`), so a transformer can never
meet a codebook it was not trained on; `DALLEPipeline.check_tokenizer` guards one passed in by hand.
"""

from __future__ import annotations

import os
from pathlib import Path

from pictext import checkpoint
from pictext.config import from_dict, to_dict
from pictext.dalle.dvae import DVAE, DVAEConfig
from pictext.dalle.model import DALLE, DALLEConfig
from pictext.dalle.pipeline import DALLEPipeline, ImageTokenizer, TokenizerMismatchError
from pictext.text import tokenizer_from_metadata
from pictext.vqgan.io import IN_DALLE
from pictext.vqgan.model import VQGAN, VQGANConfig

KIND = "dalle"
_TOKENIZERS: dict[str, tuple[type, type]] = {"vqgan": (VQGAN, VQGANConfig), "dvae": (DVAE, DVAEConfig)}


def save_dalle(pipeline: DALLEPipeline, path: str | os.PathLike, half: bool = False) -> Path:
    """One .safetensors: transformer and image tokenizer weights, both configs and the text tokenizer."""
    tensors = dict(pipeline.model.state_dict())
    tensors |= {IN_DALLE + k: v for k, v in pipeline.image_tokenizer.state_dict().items()}
    meta = {
        "config": to_dict(pipeline.model.config),
        "image_tokenizer": {
            "kind": tokenizer_kind(pipeline.image_tokenizer),
            "config": to_dict(pipeline.image_tokenizer.config),
        },  # fmt: skip
        "tokenizer": pipeline.text_tokenizer.to_metadata(),
    }
    return checkpoint.save(path, tensors, KIND, meta, half=half)


def load_dalle(path: str | os.PathLike) -> DALLEPipeline:
    """A DALL-E pipeline in eval mode, float32."""
    tensors, meta = checkpoint.load(path, KIND)
    try:
        config = from_dict(DALLEConfig, meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{path}: its recorded configs are not a DALL-E's ({e})") from e
    rest = {k: v for k, v in tensors.items() if not k.startswith(IN_DALLE)}
    model = checkpoint.build_loaded(lambda: DALLE(config), rest, path)  # first: a refusal here costs nothing built
    image_tokenizer = _image_tokenizer(tensors, meta, path)
    try:
        text = tokenizer_from_metadata(meta.get("tokenizer"), path)
    except ValueError as e:
        raise checkpoint.CheckpointError(f"{path}: {e}") from e
    return DALLEPipeline(model.eval(), text, image_tokenizer.eval())


def load_dalle_tokenizer(path: str | os.PathLike) -> ImageTokenizer:
    """The image tokenizer inside a DALL-E file alone (a VQGAN or a dVAE), eval mode, float32."""
    return _image_tokenizer(*checkpoint.load(path, KIND), path)


def _image_tokenizer(tensors: dict, meta: dict, path: str | os.PathLike) -> ImageTokenizer:
    try:
        tokenizer_cls, tokenizer_config_cls = _TOKENIZERS[meta["image_tokenizer"]["kind"]]
        tokenizer_config = from_dict(tokenizer_config_cls, meta["image_tokenizer"]["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{path}: its recorded configs are not a DALL-E's ({e})") from e
    own = {k[len(IN_DALLE) :]: v for k, v in tensors.items() if k.startswith(IN_DALLE)}
    return checkpoint.build_loaded(lambda: tokenizer_cls(tokenizer_config), own, path)


def tokenizer_kind(tokenizer: ImageTokenizer) -> str:
    return "dvae" if isinstance(tokenizer, DVAE) else "vqgan"


def save_dvae(model: DVAE, path: str | os.PathLike) -> Path:
    """A dVAE on its own, as one self-describing .safetensors (kind "dvae")."""
    return checkpoint.save(path, model.state_dict(), "dvae", {"config": to_dict(model.config)})


def load_image_tokenizer(spec: str) -> ImageTokenizer:
    """'vqgan:M' (a VQGAN file, taming .ckpt or model name) or 'dvae:M' (a native dVAE file, or a folder holding
    OpenAI's encoder.pkl and decoder.pkl)."""
    from pictext import hub

    kind, _, name = spec.partition(":")
    if kind not in _TOKENIZERS or not name:
        raise ValueError(f"an image tokenizer is vqgan:MODEL or dvae:MODEL (a file or model name), got {spec!r}")
    if kind == "vqgan":
        from pictext.vqgan.io import load_vqgan

        return load_vqgan(hub.resolve(name))
    path = hub.resolve(name)
    if path.is_dir():
        from pictext.dalle.dvae import load_openai_dvae

        return load_openai_dvae(path / "encoder.pkl", path / "decoder.pkl")
    model, _ = checkpoint.load_model(path, "dvae", DVAEConfig, DVAE)
    return model.eval()


__all__ = ["DALLEPipeline", "ImageTokenizer", "TokenizerMismatchError", "load_dalle",
           "load_image_tokenizer", "save_dalle", "save_dvae"]  # fmt: skip
