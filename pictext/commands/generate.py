"""`pictext generate` (every method of pictext.generate), `vary` and `interpolate` (unCLIP), `reconstruct` (a
VQGAN). The flags come from the methods' settings dataclasses and models; the drawing is the library's."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from pictext.commands.common import Subparsers, add_settings_flags, images_in, settings_from
from pictext.errors import UsageError


def _methods() -> dict[str, type]:
    """The Generator classes by method name (their modules import no model family's heavy parts)."""
    from pictext.generate.base import METHODS, method

    return {name: method(name) for name in METHODS}


def _model_flags(methods: dict[str, type]) -> dict[str, tuple[bool, str]]:
    """--NAME for every model a method takes: (repeatable, help naming the methods that take it)."""
    flags: dict[str, tuple[bool, str]] = {}
    for name, cls in methods.items():
        for m in cls.MODELS:
            many, help = flags.get(m.name, (m.many, ""))
            flags[m.name] = (many, (f"{help}; " if help else "") + f"{name}: {m.help}")
    return flags


def cmd_generate(args: argparse.Namespace) -> int:
    from pictext.generate import prepare
    from pictext.generate.outputs import check_target, slug

    methods = _methods()
    owners = {name: cls.Settings for name, cls in methods.items()}
    cls = methods[args.method]
    cls.check_prompt(args.prompt)  # bad prompts and settings are named before any model loads
    models = {m.name: getattr(args, m.name) for m in cls.MODELS}
    given = {k: v for k, v in models.items() if v is not None}
    preset = args.preset or cls.preset_for(cls.models_for(args.prompt, given))
    settings = settings_from(args, owners[args.method], owners, f"--method {args.method}", preset)
    if args.init == "noise":
        settings = dataclasses.replace(settings, init="noise")
    inputs, sources = _inputs(args)
    foreign = sorted(f"--{name}" for name in _model_flags(methods) if name not in models and getattr(args, name))
    if foreign:
        raise UsageError(f"{', '.join(foreign)}: not options of --method {args.method}")
    base = f"{slug(args.prompt)}-{settings.seed}"
    check_target(args.out, [f"{base}-frames"])  # before anything is drawn
    generator = prepare(args.method, args.prompt, **models)
    _say_models(generator, args.prompt)
    result = generator(args.prompt, settings, _progress(args.method, settings), **inputs)
    if result.stopped_early:
        raise UsageError("the drawing was stopped before its end; nothing was written")
    if args.method == "vqgan-clip":
        return _write_vqgan_clip(args, result, base, settings, sources)
    return _write_samples(args, result, base, sources)


def _inputs(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The input pictures the flags name, decoded before any model loads, and how the records name them."""
    from pictext.images.decode import decode_image

    inputs, sources = {}, {}
    if args.init is not None and args.init not in ("random", "noise"):
        inputs["init_image"], sources["init"] = decode_image(args.init), args.init
    if args.image_prompt:
        inputs["image_prompts"] = [decode_image(p) for p in args.image_prompt]
        sources["image_prompts"] = list(args.image_prompt)
    if args.prime:
        inputs["prime"], sources["prime"] = decode_image(args.prime), args.prime
    wrong = {"vqgan-clip": ("prime",), "dalle": ("init_image", "image_prompts"), "unclip": tuple(inputs)}[args.method]
    given = [name for name in wrong if name in inputs] + (["init"] if args.init and args.method != "vqgan-clip" else [])
    if given:
        flags = {"prime": "--prime", "init_image": "--init", "init": "--init", "image_prompts": "--image-prompt"}
        raise UsageError(f"{', '.join(sorted({flags[g] for g in given}))}: not options of --method {args.method}")
    return inputs, sources


def _say_models(generator: Any, prompt: str) -> None:
    names = ", ".join(f"{k} {' + '.join(v) if isinstance(v, list) else v}" for k, v in generator.names.items())
    print(f"pictext: drawing {prompt!r} with {generator.method} ({names})", file=sys.stderr)


def _progress(method: str, settings: Any):
    """A progress bar fed by the generator's steps (optimisation steps, or tokens and diffusion steps)."""
    from pictext.training import progress

    bars: list = []

    def show(step, picture) -> None:
        if method == "vqgan-clip":
            if not bars:
                bars.append(progress(settings.steps, "generate"))
            bars[0].set_postfix(loss=f"{step.loss:.3f}", clip=f"{step.clip_score:.3f}")
            bars[0].update(1)
        elif picture is None:  # a token or a diffusion step
            if not bars:
                bars.append(progress(int(step.terms["total"]), f"draw ({method})"))
            bars[0].update(1)
        if bars and bars[0].n >= bars[0].total:
            bars[0].close()

    return show


def _write_vqgan_clip(args: argparse.Namespace, result: Any, base: str, settings: Any, sources: dict) -> int:
    from pictext.generate.outputs import write_outputs

    record = result.records[0] | sources
    if settings.size is not None and tuple(record["size"]) != tuple(settings.size):
        w, h = record["size"]
        print(f"pictext: --size {settings.size[0]}x{settings.size[1]} is not a multiple of the VQGAN's factor; "
              f"drew {w}x{h}", file=sys.stderr)  # fmt: skip
    written = write_outputs(args.out, base, result.image, record, result.frames)
    print(f"{written['png']}  CLIP score {result.steps[0].clip_score:.3f} -> {result.clip_score:.3f}")
    for kind in ("json", "gif", "frames"):
        if kind in written:
            print(f"  {kind}: {written[kind]}")
    return 0


def _write_samples(args: argparse.Namespace, result: Any, base: str, sources: dict) -> int:
    from pictext.generate.outputs import contact_sheet, write_outputs

    for i, (image, record) in enumerate(zip(result.samples, result.records)):
        written = write_outputs(args.out, base if i == 0 else f"{base}-{i + 1}", image, record | sources)
        print(f"{written['png']}  " + (f"CLIP score {record['clip_score']:.3f}" if "clip_score" in record else
                                        "(no CLIP score: the model has no image encoder)"))  # fmt: skip
    sheet_record = {k: v for k, v in result.records[0].items() if k not in ("rank", "clip_score")}
    sheet = write_outputs(args.out, f"{base}-sheet", contact_sheet(result.samples, result.scores),
                          sheet_record | sources | {"clip_scores": result.scores})  # fmt: skip
    print(f"  contact sheet: {sheet['png']}")
    return 0


def cmd_vary(args: argparse.Namespace) -> int:
    return _unclip_pictures(args, "vary")


def cmd_interpolate(args: argparse.Namespace) -> int:
    return _unclip_pictures(args, "interpolate")


def _unclip_pictures(args: argparse.Namespace, what: str) -> int:
    """Variations of one picture, or the pictures between two: a contact sheet, the frames, a GIF."""
    from pictext.generate.models import load_unclip_model
    from pictext.generate.outputs import check_target, contact_sheet, slug, write_outputs
    from pictext.generate.unclip import InterpolateSettings, VarySettings, is_karlo
    from pictext.images.decode import decode_image

    cls = VarySettings if what == "vary" else InterpolateSettings
    s = settings_from(args, cls, {what: cls}, f"pictext {what}", "karlo" if is_karlo(args.unclip or "unclip") else None)
    sources = [args.image] if what == "vary" else [args.a, args.b]
    pictures = [decode_image(source) for source in sources]
    stems = "-to-".join(slug(Path(source).stem) for source in sources)
    name = f"{stems}-variations-{s.seed}" if what == "vary" else f"{stems}-{s.seed}"
    check_target(args.out, [f"{name}-frames"])
    pipeline = load_unclip_model(args.unclip or "unclip", args.clip)
    named = dict(zip(("image",) if what == "vary" else ("a", "b"), map(str, sources)))
    record = {"method": f"unclip-{'variations' if what == 'vary' else 'interpolation'}", **named, **s.as_record()}
    if what == "vary":
        images = pipeline.vary(pictures[0], s.n, s.guidance_scale, s.steps, s.seed, s.eta, s.upsample)
        from pictext.unclip.train import image_embeddings

        embeddings = image_embeddings(pipeline.clip, [pictures[0], *images])
        scores = (embeddings[1:] @ embeddings[0]).tolist()  # each variation's CLIP similarity to the source
        written = write_outputs(args.out, name, contact_sheet(images, scores), record | {"similarity": scores},
                                frames=images)  # fmt: skip
        print(f"{written['png']}  ({s.n} variations, CLIP similarity to the source "
              f"{min(scores):.3f}-{max(scores):.3f}; each one in {written['frames']})")  # fmt: skip
        return 0
    images = pipeline.interpolate(pictures[0], pictures[1], s.n, s.guidance_scale, s.steps, s.seed, s.upsample)
    weights = [i / (s.n - 1) for i in range(s.n)]
    written = write_outputs(args.out, name, contact_sheet(images, weights), record, frames=images)
    print(f"{written['png']}  (slerp weights 0..1; frames in {written['frames']}, GIF {written['gif']})")
    return 0


def cmd_reconstruct(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from pictext.files import atomic_write
    from pictext.generate.models import load_vqgan_model
    from pictext.images.decode import ImageError, decode_image
    from pictext.images.tensors import to_pixels
    from pictext.vqgan.loss import psnr

    if args.config:
        from pictext import hub
        from pictext.vqgan.io import load_vqgan

        model = load_vqgan(hub.resolve(args.vqgan), args.config)
    else:
        model = load_vqgan_model(args.vqgan)
    size, f = args.size or model.config.resolution, model.config.factor
    if size % f:
        size = max(f, round(size / f) * f)
        print(f"pictext: --size is not a multiple of the VQGAN's factor {f}; using {size}", file=sys.stderr)
    errors = 0
    for path in images_in(args.images):
        try:
            image = decode_image(path)
        except ImageError as e:
            print(f"pictext: skipped {e}", file=sys.stderr)
            errors += 1
            continue
        x = to_pixels([image], size)
        with torch.no_grad():
            result = model(x)
        y = result.reconstruction.clamp(-1, 1)
        pair = torch.cat([x, y], dim=3)[0]  # original | reconstruction
        array = ((pair.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        target = Path(args.output) / f"{Path(path).stem}-reconstruction.png"
        atomic_write(target, lambda tmp, a=array: Image.fromarray(a).save(tmp, format="PNG"))
        codes = len(torch.unique(result.quantized.indices))
        print(f"{target}  PSNR {psnr(x, y).item():.2f} dB, {codes} distinct codes of {model.config.n_embed}")
    return 1 if errors else 0


def register(sub: Subparsers) -> None:
    methods = _methods()
    owners = {name: cls.Settings for name, cls in methods.items()}
    p = sub.add_parser("generate", help="draw a prompt: VQGAN+CLIP ('a red apple:1 | green:-0.5'), DALL-E or unCLIP")
    p.add_argument("prompt", help="text; vqgan-clip and dalle take parts with weights: 'a red apple:1 | green:-0.5'")
    p.add_argument("--method", choices=list(owners), default="vqgan-clip")
    p.add_argument("--out", default="generated", help="output folder (default: %(default)s)")
    p.add_argument("--preset", help="a named set of settings, the flags given over it: vqgan-clip's classic (the "
                   "notebooks' 500 steps, 32 cutouts, lr 0.1; the default for a published VQGAN)")  # fmt: skip
    for name, (many, help) in _model_flags(methods).items():
        p.add_argument(f"--{name}", action="append" if many else "store", help=f"{help} (default: see README)")
    add_settings_flags(p.add_argument_group("settings (each method takes its own; see README)"), owners)
    g = p.add_argument_group("input pictures")
    g.add_argument("--init", help="vqgan-clip: random (codes), noise (pixels), or an image file to start from")
    g.add_argument("--image-prompt", action="append", help="vqgan-clip: an image to aim at, repeatable")
    g.add_argument("--prime", help="dalle: an image whose top half is kept; DALL-E draws the rest")
    p.set_defaults(run=cmd_generate)

    from pictext.generate.unclip import InterpolateSettings, VarySettings

    for name, cls, help in (
        ("vary", VarySettings, "variations of an image: its CLIP embedding decoded by unCLIP from new noise"),
        ("interpolate", InterpolateSettings, "pictures between two images: unCLIP along the slerp of their embeddings"),
    ):
        p = sub.add_parser(name, help=help)
        if name == "vary":
            p.add_argument("image", help="the image to vary")
        else:
            p.add_argument("a", help="the first image")
            p.add_argument("b", help="the last image")
        p.add_argument("--unclip", help="unCLIP file or local name (default: unclip)")
        p.add_argument("--clip", help="the CLIP the unCLIP file was trained with, when that is a file (default: the "
                       "one it names)")  # fmt: skip
        p.add_argument("--out", default="generated", help="output folder (default: %(default)s)")
        add_settings_flags(p, {name: cls})
        p.set_defaults(run=cmd_vary if name == "vary" else cmd_interpolate)

    p = sub.add_parser("reconstruct", help="encode and decode images with a VQGAN: what its codes keep")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--vqgan", default="vqgan", help="native VQGAN file, taming .ckpt, or local model name")
    p.add_argument("--config", help="the YAML of a taming .ckpt (default: the .yaml beside it)")
    p.add_argument("--size", type=int, help="side to resize to (default: the VQGAN's training resolution)")
    p.add_argument("-o", "--output", default=".", help="folder for NAME-reconstruction.png (original | result)")
    p.set_defaults(run=cmd_reconstruct)
