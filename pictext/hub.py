"""Model names to local files. pictext never downloads: a name is a file, or a model in $PICTEXT_HOME/models."""

from __future__ import annotations

import contextvars
import os
import re
from pathlib import Path

from pictext.errors import PictextError
from pictext.files import home

SHIPPED = Path(__file__).parent / "weights"  # models trained by the project's recipes, inside the package
DEFAULT_MODEL = "default"
RECIPE_MODELS = ("default", "shapes")  # CLIP recipes (clip/recipe.py); both ship, `pictext models build` remakes them


class ModelNotFoundError(PictextError, FileNotFoundError):
    pass


def models_dir() -> Path:
    return home() / "models"


def list_models() -> list[Path]:
    """Models in $PICTEXT_HOME/models, then those shipped in the package (a local file of the same name wins)."""
    found = {}
    for folder in (SHIPPED, models_dir()):
        if folder.is_dir():
            found |= {p.stem: p for p in folder.glob("*.safetensors")}
    return sorted(found.values(), key=lambda p: p.stem)


def resolve_name(name: object) -> Path:
    """The file of a model *name* (a local or shipped model), never a path: for names that files themselves
    record (an unCLIP file names its CLIP), so that a model file cannot make pictext open a path of its choosing."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ModelNotFoundError(f"{name!r:.80} is not a model name (letters, digits, '.', '_', '-')")
    for folder in (models_dir(), SHIPPED):
        if (folder / f"{name}.safetensors").is_file():
            return folder / f"{name}.safetensors"
    available = ", ".join(p.stem for p in list_models()) or "none yet"
    raise ModelNotFoundError(f"no model named {name!r} in {models_dir()} (available: {available})")


NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


# `pictext --fetch ...` lets every lookup of that command fetch a published model that is not here yet
FETCH: contextvars.ContextVar[bool] = contextvars.ContextVar("fetch", default=False)


def resolve(name: str | os.PathLike, fetch: bool | None = None) -> Path:
    """The file or Hugging Face folder for `name` (a path, a local or shipped model, or a published model of the
    registry), or ModelNotFoundError saying how to get it. `fetch`: download a published model not here yet
    (default: whether the command was given --fetch)."""
    from pictext import published

    path = Path(name).expanduser()
    if path.exists():
        return path
    item = published.entry(str(name))
    if item is not None:
        located = item.located()
        if located is not None:
            return located
        if FETCH.get() if fetch is None else fetch:
            return published.fetch(item.name)
        raise ModelNotFoundError(published.missing_message(item))
    local = models_dir() / f"{name}.safetensors"
    if local.is_file():
        return local
    shipped = SHIPPED / f"{name}.safetensors"
    if shipped.is_file():
        return shipped
    text = str(name)
    if "/" in text and not text.startswith(("/", ".", "~")) and not path.suffix:  # "ViT-B/32", not a path
        alias = "openai/" + text.replace("@336px", "-336").replace("/", "-")  # OpenAI's own names for its CLIPs
        hint = f"did you mean {alias}, a published model? " if published.entry(alias) is not None else ""
        raise ModelNotFoundError(
            f"{name} is neither a file nor a published model pictext knows; {hint}`pictext models list --published` "
            f"lists them. Or pass the checkpoint's path (OpenAI .pt, OpenCLIP file, or a Hugging Face CLIPModel "
            f"folder), or save it as a local model in {models_dir()} with `pictext convert`"
        )
    available = ", ".join(p.stem for p in list_models()) or "none yet"
    builds = {"vqgan": "the default VQGAN", "dalle": "the default DALL-E", "unclip": "the default unCLIP",
              "unclip-ru": "the unCLIP that reads Russian", "default": "the default CLIP",
              "shapes": "the shapes CLIP"}  # fmt: skip
    hint = f"; build {builds[str(name)]} with `pictext models build {name}`" if str(name) in builds else ""
    raise ModelNotFoundError(f"{name!r} is neither a file nor a model in {models_dir()} (available: {available}){hint}")
