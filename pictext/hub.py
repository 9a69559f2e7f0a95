"""Model names to local files. pictext never downloads: a name is a file, or a model in $PICTEXT_HOME/models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pictext.clip.configs import CLIP_CONFIGS

DEFAULT_MODEL = "shapes"


class ModelNotFoundError(FileNotFoundError):
    pass


def home() -> Path:
    """The cache folder: $PICTEXT_HOME, default ~/.cache/pictext."""
    return Path(os.environ.get("PICTEXT_HOME") or Path.home() / ".cache" / "pictext").expanduser()


def models_dir() -> Path:
    return home() / "models"


def list_models() -> list[Path]:
    folder = models_dir()
    return sorted(folder.glob("*.safetensors")) if folder.is_dir() else []


def resolve(name: str | os.PathLike) -> Path:
    """The file or Hugging Face folder for `name`, or ModelNotFoundError saying how to get it."""
    path = Path(name).expanduser()
    if path.exists():
        return path
    local = models_dir() / f"{name}.safetensors"
    if local.is_file():
        return local
    if str(name) == DEFAULT_MODEL:
        return ensure_default()
    slugs = {k.replace("/", "-").lower() for k in CLIP_CONFIGS}
    if str(name).replace("/", "-").lower() in slugs:
        raise ModelNotFoundError(
            f"no weights for {name} here, and pictext downloads nothing. Get the checkpoint (OpenAI .pt, OpenCLIP "
            f"file, or a Hugging Face CLIPModel folder) and pass its path, or save it as {local} with "
            "`pictext convert`"
        )
    available = ", ".join(p.stem for p in list_models()) or "none yet"
    raise ModelNotFoundError(f"{name!r} is neither a file nor a model in {models_dir()} (available: {available})")


def ensure_default() -> Path:
    """The default model's file; trained once (resumable, with a progress bar) and cached when missing."""
    path = models_dir() / f"{DEFAULT_MODEL}.safetensors"
    if not path.is_file():
        from pictext.clip.train import ShapesRecipe, train_shapes

        print(f"pictext: training the default model once; it will be cached at {path}", file=sys.stderr)
        train_shapes(ShapesRecipe(), out=path, run_dir=home() / "runs" / DEFAULT_MODEL)
    return path
