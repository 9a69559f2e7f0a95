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
    return load(path, precision="fp32").requires_grad_(False)


def load_vqgan_model(spec: ModelSpec) -> VQGAN:
    """A VQGAN: a native file, a taming .ckpt (its YAML beside it), a DALL-E file (its VQGAN), or a local name."""
    from pictext import hub
    from pictext.vqgan.io import load_vqgan

    if isinstance(spec, VQGAN):
        return spec.eval()
    try:
        return load_vqgan(hub.resolve(spec))
    except CheckpointError as e:
        raise GenerationError(f"VQGAN {spec}: {e}") from e


def load_dalle_model(spec: ModelSpec):
    from pictext import hub
    from pictext.dalle.io import load_dalle
    from pictext.dalle.pipeline import DALLEPipeline

    if isinstance(spec, DALLEPipeline):
        return spec
    try:
        return load_dalle(hub.resolve(spec))
    except CheckpointError as e:
        raise GenerationError(f"DALL-E model {spec}: {e}") from e


def load_unclip_model(spec: ModelSpec):
    from pictext import hub
    from pictext.unclip.io import load_unclip
    from pictext.unclip.pipeline import UnclipPipeline

    if isinstance(spec, UnclipPipeline):
        return spec
    try:
        return load_unclip(hub.resolve(spec))
    except CheckpointError as e:
        raise GenerationError(f"unCLIP model {spec}: {e}") from e
