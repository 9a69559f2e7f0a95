"""Save and load VQGANs: the native format, and taming-transformers checkpoints through the converter."""

from __future__ import annotations

import os
from pathlib import Path

from pictext import checkpoint
from pictext.config import to_dict
from pictext.vqgan.model import VQGAN, VQGANConfig

KIND = "vqgan"


def save_vqgan(model: VQGAN, path: str | os.PathLike, half: bool = False) -> Path:
    """One self-describing .safetensors file (config in its metadata); `half` stores weights in float16."""
    tensors = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    return checkpoint.save(path, tensors, KIND, {"config": to_dict(model.config)})


def load_vqgan(path: str | os.PathLike, config: str | os.PathLike | None = None) -> VQGAN:
    """A VQGAN in eval mode, float32: a native file, a taming `.ckpt` (with its YAML, `config`), or a DALL-E
    file whose image tokenizer is a VQGAN (the default `dalle`'s is the 32 px shapes-world VQGAN)."""
    path = Path(path)
    if path.suffix == ".ckpt":
        from pictext.vqgan.convert import load_taming

        return load_taming(path, config)
    if checkpoint.is_native(path) and checkpoint.read_metadata(path).get("pictext.kind") == "dalle":
        from pictext.dalle.io import load_dalle_tokenizer

        tokenizer = load_dalle_tokenizer(path)
        if not isinstance(tokenizer, VQGAN):
            raise checkpoint.CheckpointError(f"{path} is a DALL-E whose image tokenizer is a dVAE, not a VQGAN")
        return tokenizer
    model, _ = checkpoint.load_model(path, KIND, VQGANConfig, VQGAN)
    return model.eval()
