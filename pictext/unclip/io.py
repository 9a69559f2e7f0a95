"""unCLIP as one file: the prior, the decoder, an optional upsampler, and the name and fingerprint of the CLIP
whose space they live in.

The file holds each part's weights and config, and the name and fingerprint of the CLIP they were trained
with; loading finds that CLIP by name and refuses one whose weights differ (its embedding space would not be
theirs).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from pictext import checkpoint
from pictext.clip.model import CLIP
from pictext.config import from_dict, to_dict
from pictext.unclip.decoder import DecoderConfig, DiffusionDecoder
from pictext.unclip.pipeline import UnclipPipeline
from pictext.unclip.prior import DiffusionPrior, PriorConfig
from pictext.unclip.upsampler import DiffusionUpsampler, UpsamplerConfig

KIND = "unclip"
PARTS = {"prior": (DiffusionPrior, PriorConfig), "decoder": (DiffusionDecoder, DecoderConfig),
         "upsampler": (DiffusionUpsampler, UpsamplerConfig)}  # fmt: skip


def save_unclip(prior: DiffusionPrior | None, decoder: DiffusionDecoder | None, clip_name: str, clip: CLIP,
                path: str | os.PathLike, half: bool = False,
                upsampler: DiffusionUpsampler | None = None) -> Path:  # fmt: skip
    """The prior, the decoder and the upsampler (optional) in one file; the prior or the decoder may be None while
    it is not trained yet (the stages train separately), and loading says which one is missing."""
    from pictext.clip.embed import model_fingerprint

    tensors, meta = {}, {"clip": {"name": clip_name, "fingerprint": model_fingerprint(clip)}}
    for name, part in (("prior", prior), ("decoder", decoder), ("upsampler", upsampler)):
        if part is not None:
            tensors |= {f"{name}.{k}": v for k, v in part.state_dict().items()}
            meta[name] = to_dict(part.config)
    return checkpoint.save(path, tensors, KIND, meta, half=half)


def read_parts(path: str | os.PathLike) -> tuple[dict[str, torch.nn.Module | None], dict]:
    """({"prior": ..., "decoder": ..., "upsampler": ...}, metadata) of an unCLIP file; a part it lacks is None."""
    tensors, meta = checkpoint.load(path, KIND)
    parts: dict[str, torch.nn.Module | None] = {}
    for name, (cls, config_cls) in PARTS.items():
        if name not in meta:
            parts[name] = None
            continue
        try:
            config = from_dict(config_cls, meta[name])
        except (TypeError, ValueError) as e:
            raise checkpoint.CheckpointError(f"{path}: its recorded {name} config is not unCLIP's ({e})") from e
        own = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(name + ".")}
        parts[name] = checkpoint.build_loaded(lambda cls=cls, config=config: cls(config), own, path)
    return parts, meta


def load_unclip(path: str | os.PathLike, clip: CLIP | str | None = None) -> UnclipPipeline:
    """The pipeline in eval mode; `clip` defaults to the one the file names, and must be that CLIP. The name the
    file records is looked up among local and shipped models only (hub.resolve_name), never opened as a path."""
    from pictext import hub
    from pictext.clip.embed import load, model_fingerprint

    parts, meta = read_parts(path)
    for name in ("prior", "decoder"):
        if parts[name] is None:
            raise checkpoint.CheckpointError(
                f"{path} has no {name} yet; train it with `pictext train unclip-{name} --out {path}`"
            )
    recorded = meta.get("clip")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("fingerprint"), str):
        raise checkpoint.CheckpointError(f"{path} does not record the CLIP it was trained with (clip.fingerprint)")
    if isinstance(clip, CLIP):
        model = clip
    elif clip is not None:  # the caller's choice: a name or a path
        model = load(clip, precision="fp32")
    else:
        try:
            model = load(hub.resolve_name(recorded.get("name")), precision="fp32")
        except hub.ModelNotFoundError as e:
            raise checkpoint.CheckpointError(
                f"{path} was trained with the CLIP it names {recorded.get('name')!r:.80}, which is not a local or "
                f"shipped model ({e}); load it with pictext.unclip.io.load_unclip(path, clip=CLIP_FILE), or save that "
                "CLIP as a local model of a plain name (pictext convert) before training"
            ) from e
    if model_fingerprint(model) != recorded["fingerprint"]:
        raise checkpoint.CheckpointError(
            f"{path} was trained in the space of the CLIP {recorded.get('name')!r:.80} (fingerprint "
            f"{recorded['fingerprint']:.40}), and the CLIP given is another; pass that one"
        )
    return UnclipPipeline(model, parts["prior"], parts["decoder"], parts["upsampler"])  # type: ignore[arg-type]
