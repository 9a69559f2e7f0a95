"""The generators' models by name, file or object: one loader each, the error naming the model and the fix."""

from __future__ import annotations

from pictext.checkpoint import CheckpointError, is_native, read_metadata
from pictext.clip.model import CLIP
from pictext.generate.base import GenerationError, ModelSpec
from pictext.vqgan.model import VQGAN


def load_clip_model(spec: ModelSpec) -> CLIP:
    """A CLIP without gradients (it guides or scores), in float32."""
    from pictext import hub
    from pictext.clip.embed import load

    if isinstance(spec, CLIP):
        return spec.eval().requires_grad_(False)
    path = hub.resolve(spec)
    if path.is_file() and is_native(path) and read_metadata(path).get("pictext.kind") != "clip":
        raise GenerationError(f"{spec} is a {read_metadata(path).get('pictext.kind')} model, not a CLIP")
    return load(spec, precision="fp32").requires_grad_(False)  # by its name: a published one's activation


def load_vqgan_model(spec: ModelSpec) -> VQGAN:
    """A VQGAN: a native file, a taming .ckpt (its YAML beside it), a DALL-E file (its VQGAN), or a local name."""
    from pictext.vqgan.io import load_vqgan

    return _load(spec, VQGAN, load_vqgan, "VQGAN").eval()


def load_dalle_model(spec: ModelSpec):
    """A native DALL-E file, or a ruDALL-E folder (`rudalle/malevich` once fetched, or its files by hand)."""
    from pictext.dalle.convert import load_rudalle, rudalle_files
    from pictext.dalle.io import load_dalle
    from pictext.dalle.pipeline import DALLEPipeline

    def loader(path):
        return load_rudalle(path) if rudalle_files(path) is not None else load_dalle(path)

    return _load(spec, DALLEPipeline, loader, "DALL-E model")


def load_unclip_model(spec: ModelSpec, clip: ModelSpec | None = None):
    """An unCLIP pipeline in the space of the CLIP its file names, or of `clip` (which must be that CLIP: a file
    records its CLIP by name, and a CLIP it names by path is opened only when the caller passes it)."""
    from pictext.unclip.io import load_unclip
    from pictext.unclip.karlo import KarloPipeline, is_karlo_folder, load_karlo
    from pictext.unclip.pipeline import UnclipPipeline

    if isinstance(spec, KarloPipeline):
        return spec
    model = None if clip is None else load_clip_model(clip)

    def loader(path):
        if not is_karlo_folder(path):
            return load_unclip(path, clip=model)
        if clip is not None:
            raise GenerationError(f"{spec} is Karlo, which brings its own CLIP (its text and image encoders); "
                                  "leave --clip out")  # fmt: skip
        return load_karlo(path)

    return _load(spec, UnclipPipeline, loader, "unCLIP model")


def _load(spec: ModelSpec, cls: type, loader, label: str):
    """`spec` itself when it is already a `cls`, else `loader` of the file it names; file errors name the model."""
    from pictext import hub

    if isinstance(spec, cls):
        return spec
    try:
        return loader(hub.resolve(spec))
    except CheckpointError as e:
        raise GenerationError(f"{label} {spec}: {e}") from e
