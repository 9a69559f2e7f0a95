"""VQGAN+CLIP on the shapes world, judged by the oracle: does the picture show the prompt?

All 20 colour-shape prompts ("a red circle", ...), 3 seeds each, drawn with the VQGAN that shapes prompts get by
default (the default DALL-E's 32 px tokenizer, `--vqgan dalle`) at its own size and guided by the `shapes` CLIP
(five of the 20 combinations were held out of that CLIP's and that VQGAN's training). Each output is judged by
`judge` (pictext.data.shapes): `dominant` (the largest named-colour region is the requested colour and shape;
the headline) and `contains` (some region of that colour has that shape). Also: whether the CLIP score rose
from the first to the last step in every run, and seconds per image.

    python bench/vqgan_clip.py [--steps 100] [--init background|random] [--vqgan dalle] [--clip shapes[,default]]
                               [--size N] [--cut-power P] [--lr LR] [--smoothness W] [--palette-weight W]
                               [--seeds 0,1,2] [--language en|ru]
                               [--json bench/results/vqgan_clip.json]

Writes bench/results/vqgan_clip.json (summary keys `oracle_accuracy` and `oracle_accuracy_heldout`, the
dominant verdict; target >= 0.70).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pictext import hub
from pictext.api import load
from pictext.data.phrasings import Described, phrase
from pictext.data.shapes import COLORS, DEFAULT_HELD_OUT, SHAPES, judge
from pictext.generate import generate
from pictext.generate.vqgan_clip import VQGANCLIPSettings as GenerateConfig
from pictext.vqgan.io import load_vqgan

SEEDS = (0, 1, 2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--init", choices=["random", "background"], default="background",
                        help="random codes (pictext generate's default), or a plain image in a shapes-world "
                        "background grey (the pictures then start as the world's scenes do)")  # fmt: skip
    parser.add_argument(
        "--vqgan", default="dalle", help="default: the one shapes prompts get (VQGANCLIPGenerator.defaults)"
    )
    parser.add_argument("--clip", default="shapes", help="a CLIP, or several comma-separated (losses summed)")
    parser.add_argument("--cutouts", type=int, default=GenerateConfig.cutouts)
    parser.add_argument("--cut-power", type=float, default=GenerateConfig.cut_power,
                        help="> 1 favours small cutouts, < 1 large ones, 0: whole pictures only")  # fmt: skip
    parser.add_argument("--lr", type=float, default=GenerateConfig.lr)
    parser.add_argument("--smoothness", type=float, default=GenerateConfig.smoothness, help="total variation weight")
    parser.add_argument("--palette-weight", type=float, default=GenerateConfig.palette_weight,
                        help="weight of the palette loss towards the shapes world's colours (its background grey "
                        "and the five named colours)")  # fmt: skip
    parser.add_argument("--size", type=int, help="side of the pictures drawn (default: the VQGAN's training side)")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--language", choices=["en", "ru"], default="en", help="the prompts' language")
    parser.add_argument("--out", default=None, help="also save every picture here")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "vqgan_clip.json")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    clip, vqgan = [load(name) for name in args.clip.split(",")], load_vqgan(hub.resolve(args.vqgan))
    args.size = args.size or vqgan.config.resolution
    background = Image.new("RGB", (args.size, args.size), (40, 40, 40))
    rows = []
    for color in COLORS:
        for shape in SHAPES:
            for seed in seeds:
                prompt = phrase(Described(shape, color), args.language)  # "a red circle" / "красный круг"
                began = time.perf_counter()
                init = {"init": "image", "init_image": background} if args.init == "background" else {}
                result = generate(prompt, clip=clip, vqgan=vqgan, seed=seed, steps=args.steps, size=args.size,
                                  cutouts=args.cutouts, cut_power=args.cut_power, lr=args.lr, frame_every=0,
                                  smoothness=args.smoothness, palette_weight=args.palette_weight,
                                  palette=((40, 40, 40), *COLORS.values()),
                                  **init)  # fmt: skip
                seconds = time.perf_counter() - began
                verdict = judge(result.image, color, shape)
                row = {
                    "system": "pictext", "prompt": prompt, "seed": seed, "held_out": (color, shape) in DEFAULT_HELD_OUT,
                    "dominant": verdict.dominant, "contains": verdict.contains, "regions": verdict.regions,
                    "largest": None if verdict.largest is None else [verdict.largest.color, verdict.largest.shape],
                    "clip_score_first": result.steps[0].clip_score, "clip_score_last": result.clip_score,
                    "seconds": round(seconds, 2),
                }  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.out:
                    Path(args.out).mkdir(parents=True, exist_ok=True)
                    result.image.save(Path(args.out) / f"{color}-{shape}-{seed}.png")
    seen = [r for r in rows if not r["held_out"]]
    held = [r for r in rows if r["held_out"]]

    def share(rs: list[dict], key: str) -> float:
        return round(float(np.mean([r[key] for r in rs])), 3)

    def per_seed(rs: list[dict], key: str) -> list[float]:
        return [share([r for r in rs if r["seed"] == s], key) for s in seeds]

    summary = {
        "oracle_accuracy": share(seen, "dominant"),
        "oracle_accuracy_heldout": share(held, "dominant"),
        "oracle_accuracy_all": share(rows, "dominant"),
        "oracle_accuracy_by_seed": per_seed(seen, "dominant"),
        "oracle_accuracy_heldout_by_seed": per_seed(held, "dominant"),
        "contains_accuracy": share(seen, "contains"),
        "contains_accuracy_heldout": share(held, "contains"),
        "clip_score_rose_in_every_run": all(r["clip_score_last"] > r["clip_score_first"] for r in rows),
        "runs_where_clip_score_rose": sum(r["clip_score_last"] > r["clip_score_first"] for r in rows),
        "runs": len(rows),
        "seconds_per_image": round(float(np.mean([r["seconds"] for r in rows])), 2),
        "steps": args.steps,
        "cutouts": args.cutouts,
        "cut_power": args.cut_power,
        "lr": args.lr,
        "smoothness": args.smoothness,
        "palette_weight": args.palette_weight,
        "init": args.init,
        "size": args.size,
    }
    machine = {"cpu": platform.processor() or platform.machine(), "threads": os.cpu_count(), "torch": torch.__version__}
    out = {"summary": summary, "rows": rows, "machine": machine, "models": {"clip": args.clip, "vqgan": args.vqgan}}
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
