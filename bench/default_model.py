"""What the default CLIP can do, over training seeds, and its image towers compared.

For each seed (and each image tower asked for) the default recipe is trained (`pictext train clip --recipe
default --seed S`; cached as $PICTEXT_HOME/models/default-TOWER-sS.safetensors) and measured on:

- `cross_style_recall_at_10`: Facebook's emoji, a drawing style never trained on: 1,000 of its pictures of
  base emoji (no skin tones; a fixed draw from both splits), text-to-image recall@10 by name;
- `heldout_names_recall_at_10`: held-out emoji (never in a caption), Google's drawings, recall@10 by name;
- `shapes_heldout_top1`: zero-shot top-1 on held-out colour-shape combinations of the shapes world.

Summary: mean and worst over seeds, per tower; the file also holds every run. Writes
bench/results/default_model.json.

    python bench/default_model.py --seeds 0,1,2 --towers vit,resnet
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from pictext import hub
from pictext.api import embed_images, load
from pictext.clip.recipe import DEFAULT_RECIPE, build
from pictext.data.emoji import ensure_emoji, named_images
from pictext.evaluate import emoji_recall, evaluate_data, evaluate_emoji

TOWERS = {  # image towers at about the same training time on 2 cores (bf16 on AMX: 3.4 ResNet steps a second, 2.8 ViT)
    "vit": {"patch_size": 8, "vision_width": 128, "vision_layers": 4, "steps": 900},  # 4 layers of 128, 8 px patches
    "resnet": {"patch_size": None, "vision_layers_rn": (1, 1, 1, 1), "vision_width": 32, "steps": 1000},
}
TOWERS |= {f"{k}-augment": v | {"augment": True} for k, v in TOWERS.items()}  # the same with caption-safe augmentation
TARGETS = {"cross_style_recall_at_10": 0.5, "heldout_names_recall_at_10": 0.5, "shapes_heldout_top1": 0.8}


def model_file(tower: str, seed: int) -> Path:
    path = hub.models_dir() / f"default-{tower}-s{seed}.safetensors"
    if not path.is_file():
        schedule = {k: v for k, v in TOWERS[tower].items() if k in ("steps", "lr", "augment")}
        train = dataclasses.replace(DEFAULT_RECIPE.train, seed=seed, **schedule)
        fields = {k: v for k, v in TOWERS[tower].items() if k not in schedule}
        recipe = dataclasses.replace(DEFAULT_RECIPE, train=train, **fields)
        began = time.perf_counter()
        build(recipe, out=path, run_dir=path.with_suffix(".run"))
        path.with_suffix(".seconds").write_text(f"{time.perf_counter() - began:.0f}\n")
    return path


def cross_style(model, n: int = 1000) -> float:
    folder = ensure_emoji(hub.home(), "facebook")
    pngs, names = [], []
    for split in ("train", "held_out"):
        p, m = named_images(folder, split)
        keep = [i for i, x in enumerate(p) if "-1f3f" not in x.stem]  # base emoji, no skin-tone variants
        pngs += [p[i] for i in keep]
        names += [m[i] for i in keep]
    pick = np.sort(np.random.default_rng(0).choice(len(pngs), size=min(n, len(pngs)), replace=False))
    good, images, _ = embed_images(model, [pngs[i] for i in pick])
    return emoji_recall(model, images, [names[pick[i]] for i in good])["text_to_image_r@10"]


def measure(path: Path) -> dict[str, float]:
    model = load(path, precision="fp32")
    return {
        "cross_style_recall_at_10": cross_style(model),
        "heldout_names_recall_at_10": evaluate_emoji(model, ensure_emoji(hub.home()))["text_to_image_r@10"],
        "shapes_heldout_top1": evaluate_data(model, "shapes")["zero_shot_held_out_top1"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--towers", default="vit", help=f"comma-separated, of {', '.join(TOWERS)}")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "default_model.json")
    args = parser.parse_args()
    rows = []
    for tower in args.towers.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            path = model_file(tower, seed)
            seconds = path.with_suffix(".seconds")
            row = {
                "tower": tower,
                "seed": seed,
                "train_seconds": float(seconds.read_text()) if seconds.is_file() else None,
            }
            rows.append(row | measure(path))
            print(rows[-1], flush=True)
    summary = {}
    for tower in dict.fromkeys(r["tower"] for r in rows):
        mine = [r for r in rows if r["tower"] == tower]
        entry = {"seeds": len(mine)}
        for key, target in TARGETS.items():
            values = [r[key] for r in mine]
            entry |= {key: float(np.mean(values)), f"{key}_worst": float(min(values)), f"{key}_target": target}
        summary[tower] = entry
    out = {
        "summary": summary,
        "rows": rows,
        "notes": "default recipe (LiT: all-MiniLM-L6-v2 locked; Google, Twitter and OpenMoji emoji with names and "
        "keywords, and the shapes world); Facebook's emoji never trained on; mean and worst over training seeds",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },  # fmt: skip
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
