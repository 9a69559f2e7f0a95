"""Save and load VQGANs: the native format, and taming-transformers checkpoints through the converter."""

from __future__ import annotations

import os
from pathlib import Path

from pictext import checkpoint
from pictext.config import from_dict, to_dict
from pictext.vqgan.model import VQGAN, VQGANConfig

KIND = "vqgan"
IN_DALLE = "image_tokenizer."  # where a DALL-E file keeps its image tokenizer's tensors (dalle/io.py writes them)


def save_vqgan(model: VQGAN, path: str | os.PathLike, half: bool = False) -> Path:
    """One self-describing .safetensors file (config in its metadata); `half` stores weights in float16."""
    return checkpoint.save(path, model.state_dict(), KIND, {"config": to_dict(model.config)}, half=half)


def load_vqgan(path: str | os.PathLike, config: str | os.PathLike | None = None) -> VQGAN:
    """A VQGAN in eval mode, float32: a native file, a taming `.ckpt` (with its YAML, `config`), or a DALL-E
    file whose image tokenizer is a VQGAN (the default `dalle`'s is the 32 px shapes-world VQGAN)."""
    path = Path(path)
    if path.suffix == ".ckpt":
        from pictext.vqgan.convert import load_taming

        return load_taming(path, config)
    if checkpoint.is_native(path) and checkpoint.read_metadata(path).get("pictext.kind") == "dalle":
        return _from_dalle_file(path)
    model, _ = checkpoint.load_model(path, KIND, VQGANConfig, VQGAN)
    return model.eval()


def _from_dalle_file(path: Path) -> VQGAN:
    """The VQGAN inside a DALL-E file: its image tokenizer, when that is a VQGAN."""
    tensors, meta = checkpoint.load(path, "dalle")
    recorded = meta.get("image_tokenizer")
    if not isinstance(recorded, dict) or recorded.get("kind") not in ("vqgan", "dvae"):
        raise checkpoint.CheckpointError(f"{path}: its recorded image tokenizer is not a DALL-E's")
    if recorded["kind"] != "vqgan":
        raise checkpoint.CheckpointError(f"{path} is a DALL-E whose image tokenizer is a dVAE, not a VQGAN")
    try:
        config = from_dict(VQGANConfig, recorded.get("config"))
    except (TypeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{path}: its recorded image tokenizer config is not a VQGAN's ({e})") from e
    own = {k[len(IN_DALLE) :]: v for k, v in tensors.items() if k.startswith(IN_DALLE)}
    return checkpoint.build_loaded(lambda: VQGAN(config), own, path)
