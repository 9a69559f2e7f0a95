"""The three generators side by side on the same held-out shapes prompts: VQGAN+CLIP, DALL-E, unCLIP.

Prompts: "a {colour} {shape}" for the five colour-shape combinations every model here was trained without.
For each generator and sampling seed (3), one picture per prompt, with each generator's defaults:

- VQGAN+CLIP: the VQGAN shapes prompts get by default (the default DALL-E's, 32 px) guided by the `shapes` CLIP,
  100 steps from random codes;
- DALL-E: the default DALL-E, 16 samples at guidance 3, the best by the `shapes` CLIP kept;
- unCLIP: the default prior (best of 2) and decoder (no guidance, 50 DDIM steps, eta 1), in the `shapes` CLIP's space.

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
from pictext.data.shapes import DEFAULT_HELD_OUT, judge
from pictext.generate import default_vqgan_for, generate, load_dalle_model, load_unclip_model
from pictext.generate.rerank import clip_scores
from pictext.vqgan.io import load_vqgan

SEEDS = (0, 1, 2)
PROMPTS = [(f"a {c} {s}", c, s) for c, s in DEFAULT_HELD_OUT]


def main() -> None:
    shapes = load("shapes", precision="fp32")
    judge_clip = load(os.environ.get("JUDGE_CLIP", "shapes-seed1"), precision="fp32")
    vqgan = load_vqgan(hub.resolve(default_vqgan_for(PROMPTS[0][0])))
    dalle, unclip = load_dalle_model("dalle"), load_unclip_model("unclip")
    draw = {
        "VQGAN+CLIP": lambda p, s: generate(p, clip=shapes, vqgan=vqgan, steps=100, seed=s).image,
        "DALL-E": lambda p, s: generate(p, method="dalle", dalle=dalle, clip=shapes, seed=s).image,
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
    out = {
        "summary": {r["system"]: r["oracle_accuracy"] for r in rows},
        "rows": rows,
        "prompts": [p for p, _, _ in PROMPTS],
        "judge_clip": os.environ.get("JUDGE_CLIP", "shapes-seed1"),
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
