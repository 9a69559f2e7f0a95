"""Save and load CLIP models: the native format, and every foreign one through the converters."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from pictext import checkpoint
from pictext.checkpoint import CheckpointError
from pictext.clip.convert import (
    clip_from_hf,
    clip_from_state_dict,
    hf_preprocess,
    is_ruclip_folder,
    load_ruclip,
    read_foreign,
)
from pictext.clip.model import CLIP, CLIPConfig
from pictext.config import from_dict, to_dict
from pictext.images.transforms import Preprocess
from pictext.text.tokenizer import ClipBPETokenizer, tokenizer_from_metadata

KIND = "clip"


def save_clip(model: CLIP, path: str | os.PathLike, half: bool = False) -> Path:
    """Write `model` with its config, preprocessing and tokenizer in one self-describing .safetensors file;
    `half` stores the weights in float16 (they load as float32).

    A LiT model whose text tower is still the installed all-MiniLM-L6-v2 (`model.text_source`, unchanged by
    training) is saved without it: the file names the package and the sha256 of its weights, and loading
    reads the tower from there (90 MB not copied into every model)."""
    if model.tokenizer is None:
        raise ValueError("model has no tokenizer; set model.tokenizer before saving so the file is usable alone")
    meta = {
        "config": to_dict(model.config),
        "preprocess": to_dict(model.preprocess),
        "tokenizer": model.tokenizer.to_metadata(),
    }
    state = model.state_dict()
    if model.text_source is not None and _text_tower_unchanged(model):
        meta["text_source"] = model.text_source
        state = {k: v for k, v in state.items() if not k.startswith("text.")}
    return checkpoint.save(path, state, KIND, meta, half=half)


def _text_tower_unchanged(model: CLIP) -> bool:
    from pictext.clip.lit import text_tower_state

    package = text_tower_state(model.text_source, model.config.text)  # type: ignore[arg-type]
    mine = {k: v for k, v in model.state_dict().items() if k.startswith("text.")}
    return mine.keys() == package.keys() and all(torch.equal(mine[k].cpu(), package[k]) for k in mine)


def load_clip(
    path: str | os.PathLike,
    activation: str | None = None,
    vocab: str | os.PathLike | None = None,
    config: CLIPConfig | None = None,
) -> CLIP:
    """A CLIP in eval mode, float32, from a native file or an OpenAI / OpenCLIP / Hugging Face checkpoint.

    `activation` ("quick_gelu" or "gelu") is needed only for bare OpenCLIP state dicts, whose files don't say.
    `config` is for state dicts whose architecture the tensors cannot tell (attention heads other than
    width // 64); it is ignored for native and Hugging Face files, which carry their own.
    """
    path = Path(path)
    if path.is_file() and checkpoint.is_native(path):
        model, meta = checkpoint.load_model(path, KIND, CLIPConfig, CLIP, complete=_text_from_package)
        model.text_source = meta.get("text_source")
        try:
            model.preprocess = from_dict(Preprocess, meta.get("preprocess"))
            model.tokenizer = tokenizer_from_metadata(meta.get("tokenizer"), path)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: {e}") from e
        return model.eval()
    if is_ruclip_folder(path):
        return load_ruclip(path)
    sd, hf_config, source = read_foreign(path)
    try:
        model = _from_foreign(path, sd, hf_config, source, activation, config)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, ZeroDivisionError) as e:
        if isinstance(e, CheckpointError):
            raise
        missing = f"it has no tensor {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise CheckpointError(f"{path} is not a CLIP pictext can read ({missing})") from e
    model.tokenizer = ClipBPETokenizer(vocab or _vocab_beside(path), context_length=model.config.text.context_length)
    return model


def _from_foreign(path: Path, sd: dict, hf_config: dict | None, source: str, activation: str | None,
                  config: CLIPConfig | None) -> CLIP:  # fmt: skip
    if source == "huggingface":
        assert hf_config is not None
        model = clip_from_hf(sd, hf_config)
        model.preprocess = hf_preprocess(path, model.config.vision.image_size)
    else:
        if source == "torchscript":
            activation = activation or "quick_gelu"  # every OpenAI archive was trained with QuickGELU
        if activation is None:
            raise CheckpointError(
                f"{path} is an OpenCLIP/OpenAI state dict, which does not record its activation. Pass "
                "activation='quick_gelu' (OpenAI weights, '-quickgelu' models) or activation='gelu' (most LAION "
                "weights); a wrong choice silently degrades the model, so pictext does not guess."
            )
        model = clip_from_state_dict(sd, activation, config)
    return model


def _text_from_package(tensors: dict, meta: dict, config: CLIPConfig, path: Path) -> dict:
    """A file saved without its text tower gets it from the package it names (checked by hash)."""
    if "text_source" not in meta:
        return tensors
    if not isinstance(meta["text_source"], dict):
        raise CheckpointError(f"{path}: its text_source is not a map naming a package")
    from pictext.clip.lit import text_tower_state

    return tensors | text_tower_state(meta["text_source"], config.text, path)


def _vocab_beside(path: Path) -> Path | None:
    folder = path if path.is_dir() else path.parent
    candidate = folder / "bpe_simple_vocab_16e6.txt.gz"
    return candidate if candidate.is_file() else None
