"""The three generators side by side on the same held-out shapes prompts and emoji names: VQGAN+CLIP, DALL-E, unCLIP.

Prompts: "a {colour} {shape}" for the five colour-shape combinations every model here was trained without.
For each generator and sampling seed (3), one picture per prompt, with each generator's defaults:

- VQGAN+CLIP: the VQGAN shapes prompts get by default (the default DALL-E's, 32 px) guided by the `shapes` CLIP,
  100 steps from random codes;
- DALL-E: the default DALL-E, 16 samples at guidance 3, the best by the `shapes` and `default` CLIPs together
  kept (their cosines summed; `DALLEGenerator.defaults`);
- unCLIP: the default prior (best of 2) and decoder (guidance 1.5, 50 DDIM steps, eta 1), in the `default` CLIP's
  space.

Emoji: 10 held-out emoji names (no shipped model saw them in a caption), one picture a name and seed, each
generator with its defaults for such a prompt: VQGAN+CLIP with the default VQGAN and the `default` CLIP, DALL-E
reranked by the `default` CLIP, unCLIP (in the `default` CLIP's space). Their CLIP score with the name is judged by
`JUDGE_EMOJI_CLIP` (default `default-resnet-s1`: the default recipe trained with seed 1, which bench/default_model.py
leaves in the cache), next to the score of the real emoji of those names.

Reported: the oracle's accuracy (`judge(...).dominant`), the CLIP score of the picture with its prompt judged by
a CLIP that neither guided nor reranked (`JUDGE_CLIP`, default `shapes-seed1`: the shapes recipe trained with
seed 1; `pictext train clip --recipe shapes --seed 1 --out $PICTEXT_HOME/models/shapes-seed1.safetensors`), and
seconds per picture (wall clock, 2 cores; DALL-E's includes its 16 samples and the reranking).
Writes bench/results/generate_compare.json.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from pictext import hub
from pictext.api import load
from pictext.data.emoji import ensure_emoji, named_images
from pictext.data.shapes import DEFAULT_HELD_OUT, judge
from pictext.generate import generate
from pictext.generate.dalle import DALLEGenerator
from pictext.generate.models import load_dalle_model, load_unclip_model
from pictext.generate.rerank import clip_scores
from pictext.generate.vqgan_clip import VQGANCLIPGenerator
from pictext.vqgan.io import load_vqgan

SEEDS = (0, 1, 2)
PROMPTS = [(f"a {c} {s}", c, s) for c, s in DEFAULT_HELD_OUT]
EMOJI_NAMES = 10


def held_out_emoji(n: int = EMOJI_NAMES) -> tuple[list[str], list[Path]]:
    """`n` held-out Google emoji names (no skin-tone variants) and their real pictures."""
    pngs, names = named_images(ensure_emoji(hub.home()), "held_out")
    base = [i for i, p in enumerate(pngs) if "-1f3f" not in p.stem]
    pick = np.sort(np.random.default_rng(1).choice(base, size=n, replace=False))
    return [names[i] for i in pick], [pngs[i] for i in pick]


def emoji_rows(dalle, unclip) -> list[dict]:
    """Each generator's CLIP score on held-out emoji names, by a CLIP none of them used, and the real emoji's."""
    from PIL import Image

    default = load("default", precision="fp32")
    judge_clip = load(os.environ.get("JUDGE_EMOJI_CLIP", "default-resnet-s1"), precision="fp32")
    vqgan = load_vqgan(hub.resolve(VQGANCLIPGenerator.defaults("an emoji")["vqgan"]))
    names, pngs = held_out_emoji()
    real = [float(clip_scores([Image.open(p)], name, judge_clip)[0]) for name, p in zip(names, pngs)]
    rows = [{"system": "real held-out emoji", "clip_score_judge": float(np.mean(real))}]
    draw = {
        "VQGAN+CLIP": lambda p, s: generate(p, clip=default, vqgan=vqgan, steps=100, seed=s).image,
        "DALL-E": lambda p, s: generate(p, method="dalle", dalle=dalle, clip=default, seed=s).image,
        "unCLIP": lambda p, s: generate(p, method="unclip", unclip=unclip, samples=1, seed=s).image,
    }
    for system, run in draw.items():
        scores, seconds = [], []
        for seed in SEEDS:
            for name in names:
                began = time.perf_counter()
                image = run(name, seed)
                seconds.append(time.perf_counter() - began)
                scores.append(float(clip_scores([image], name, judge_clip)[0]))
        rows.append({"system": system, "clip_score_judge": float(np.mean(scores)),
                     "seconds_per_image": float(np.mean(seconds))})  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    shapes = load("shapes", precision="fp32")
    rerankers = [load(name, precision="fp32") for name in DALLEGenerator.defaults(PROMPTS[0][0])["clip"]]
    judge_clip = load(os.environ.get("JUDGE_CLIP", "shapes-seed1"), precision="fp32")
    vqgan = load_vqgan(hub.resolve(VQGANCLIPGenerator.defaults(PROMPTS[0][0])["vqgan"]))
    dalle, unclip = load_dalle_model("dalle"), load_unclip_model("unclip")
    draw = {
        "VQGAN+CLIP": lambda p, s: generate(p, clip=shapes, vqgan=vqgan, steps=100, seed=s).image,
        "DALL-E": lambda p, s: generate(p, method="dalle", dalle=dalle, clip=rerankers, seed=s).image,
        "unCLIP": lambda p, s: generate(p, method="unclip", unclip=unclip, samples=1, seed=s).image,
    }
    rows = []
    for name, run in draw.items():
        accuracy, scores, seconds = [], [], []
        for seed in SEEDS:
            shown = []
            for prompt, color, shape in PROMPTS:
                began = time.perf_counter()
                image = run(prompt, seed)
                seconds.append(time.perf_counter() - began)
                shown.append(judge(image, color, shape).dominant)
                scores.append(float(clip_scores([image], prompt, judge_clip)[0]))
            accuracy.append(float(np.mean(shown)))
        row = {"system": name, "oracle_accuracy": float(np.mean(accuracy)), "oracle_accuracy_worst": min(accuracy),
               "oracle_accuracy_seeds": accuracy, "clip_score_judge": float(np.mean(scores)),
               "seconds_per_image": float(np.mean(seconds))}  # fmt: skip
        rows.append(row)
        print(rows[-1], flush=True)
    emoji = emoji_rows(dalle, unclip)
    out = {
        "summary": {r["system"]: r["oracle_accuracy"] for r in rows}
        | {f"emoji_clip_score_{r['system'].split()[0]}": r["clip_score_judge"] for r in emoji},  # "real held-out..."
        "rows": rows,
        "emoji_rows": emoji,
        "prompts": [p for p, _, _ in PROMPTS],
        "emoji_names": held_out_emoji()[0],
        "judge_clip": os.environ.get("JUDGE_CLIP", "shapes-seed1"),
        "judge_emoji_clip": os.environ.get("JUDGE_EMOJI_CLIP", "default-resnet-s1"),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },  # fmt: skip
    }
    path = Path(__file__).parent / "results" / "generate_compare.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["summary"], indent=2))


if __name__ == "__main__":
    main()
