"""The CLIP commands: `classify` (zero-shot), `encode` (embeddings to .npy), `eval`, `convert`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pictext.commands.common import Subparsers, data_args, images_in, model_args, precision_arg, say_precision


def _templates(name: str) -> tuple[str, ...]:
    from pictext.clip.zero_shot import DEFAULT_TEMPLATES, RUSSIAN_TEMPLATES, imagenet_templates

    return {"default": DEFAULT_TEMPLATES, "imagenet": imagenet_templates(), "russian": RUSSIAN_TEMPLATES,
            "none": ("{}",)}[name]  # fmt: skip


def cmd_classify(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from pictext.api import embed_images, inference, load, unit_rows
    from pictext.clip.zero_shot import class_embeddings, zero_shot_probs

    model = say_precision(load(args.model, activation=args.activation, precision=args.precision))
    labels = [label.strip() for label in args.labels.split(",")] if args.labels.strip() else []
    with inference(model):
        classes = torch.from_numpy(unit_rows(class_embeddings(model, labels, _templates(args.templates))))
    paths = images_in(args.images)
    indices, features, errors = embed_images(model, paths)
    probs = (
        zero_shot_probs(model, torch.from_numpy(features), classes).numpy() if indices else np.zeros((0, len(labels)))
    )
    results = []
    for row, i in enumerate(indices):
        order = np.argsort(-probs[row])
        results.append(
            {"image": str(paths[i]), "labels": [{"label": labels[j], "prob": float(probs[row, j])} for j in order]}
        )
    if args.json:
        print(json.dumps({"results": results, "errors": [str(e) for e in errors]}, indent=2))
    else:
        for r in results:
            print(r["image"])
            for item in r["labels"][: args.top]:
                print(f"  {item['prob']:7.2%}  {item['label']}")
    for e in errors:
        print(f"pictext: skipped {e}", file=sys.stderr)
    return 1 if errors else 0


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from pictext.api import embed_images, load
    from pictext.files import atomic_write
    from pictext.images.decode import ImageError

    paths = images_in(args.inputs)
    model = say_precision(load(args.model, activation=args.activation, precision=args.precision))
    indices, features, errors = embed_images(model, paths, batch_size=args.batch_size)
    if not indices:
        raise ImageError(", ".join(str(e.source) for e in errors), "no input is a readable image; nothing written")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "embeddings.npy", lambda tmp: np.save(open(tmp, "wb"), features))
    manifest = {
        "model": str(args.model or "default"),
        "dim": int(features.shape[1]),
        "count": len(indices),
        "paths": [str(paths[i]) for i in indices],
        "errors": [{"path": str(e.source), "reason": e.reason} for e in errors],
    }
    atomic_write(
        out / "manifest.json", lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    )
    print(f"wrote {len(indices)} embeddings of dimension {features.shape[1]} to {out}/embeddings.npy")
    for e in errors:
        print(f"pictext: skipped {e}", file=sys.stderr)
    return 1 if errors else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pictext.api import load
    from pictext.evaluate import evaluate_data

    model = load(args.model, activation=args.activation, precision="fp32")  # figures that hold on any machine
    results = evaluate_data(model, args.data, image_column=args.image_column, caption_column=args.caption_column)
    if args.json:
        print(json.dumps({"model": args.model or "default", "data": args.data, "results": results}, indent=2))
    else:
        for name, value in results.items():
            print(f"{name:28s} {value:7.1%}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from pictext.clip.convert import export_hf, export_open_clip
    from pictext.clip.io import load_clip, save_clip

    model = load_clip(args.source, activation=args.activation)
    {"native": save_clip, "hf": export_hf, "open_clip": export_open_clip}[args.to](model, args.output)
    print(f"wrote {args.output} ({args.to})")
    return 0


def register(sub: Subparsers) -> None:
    p = sub.add_parser("classify", help="zero-shot classify images among labels")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--labels", required=True, help='comma-separated labels, e.g. "cat,dog,person"')
    p.add_argument("--templates", choices=["default", "imagenet", "russian", "none"], default="default",
                   help="prompts each label is put in: English ones, ImageNet's 80, ruCLIP's Russian ones, or the "
                   "label alone")  # fmt: skip
    p.add_argument("--top", type=int, default=5, help="labels to print per image")
    p.add_argument("--json", action="store_true", help="print JSON")
    model_args(p)
    precision_arg(p)
    p.set_defaults(run=cmd_classify)

    p = sub.add_parser("encode", help="write normalized image embeddings (.npy) and a manifest")
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--batch-size", type=int, default=64)
    model_args(p)
    precision_arg(p)
    p.set_defaults(run=cmd_encode)

    p = sub.add_parser("eval", help="zero-shot top-1/5, recall@1/5/10 both ways, linear probe")
    data_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    model_args(p)
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("convert", help="import a foreign checkpoint, or export to Hugging Face / OpenCLIP layout")
    p.add_argument("source", help="OpenAI .pt, OpenCLIP file, Hugging Face folder, or native .safetensors")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--to", choices=["native", "hf", "open_clip"], default="native")
    p.add_argument("--activation", choices=["quick_gelu", "gelu"])
    p.set_defaults(run=cmd_convert)
