"""What more training buys the default DALL-E: transformer steps, size and data against the shapes oracle.

Every variant trains a transformer on the recipe's own image tokens (its VQGAN and token cache, from
`pictext models build dalle`: $PICTEXT_HOME/models/dalle.run) for 3 training seeds, then draws 16 samples
per caption at guidance 3 for the held-out and the seen colour-shape captions of bench/dalle.py, over 3
sampling seeds, and reports the oracle's accuracy on every sample and on the one kept by the shapes CLIP.
Figures per variant: the mean and the worst over the training seeds (each the mean over sampling seeds).

Jobs run as parallel processes (`--jobs`); on a GPU they share it. Writes bench/results/dalle_scaling.json
(or `--out`) after every job, keeping the rows it already holds of variants this run does not train; with
`--save DIR`, each variant's seed-0 pipeline too (fp16): the recipe's seed, so a winning variant's file is
what the recipe with its settings trains.

    python bench/dalle_scaling.py --run ~/.cache/pictext/models/dalle.run --jobs 4
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
SIZE = {"width": 192, "layers": 4, "heads": 6, "batch_size": 32}
VARIANTS = {  # name: transformer size, training length, extra shapes pictures (beyond the recipe's scenes)
    # the recipe: 20,000 single shapes beside its scenes, half of them in unnamed hues captioned by form alone
    # ("a small triangle"), for the transformer only (DALLERecipe.forms_length): shape taught apart from colour
    "recipe": SIZE | {"steps": 9600, "extra_shapes": 0, "forms": True},
    "forms-4800": SIZE | {"steps": 4800, "extra_shapes": 0, "forms": True},  # the recipe before twice the steps
    "no-forms": SIZE | {"steps": 4800, "extra_shapes": 0},  # the recipe before the form-only shapes
    "half": SIZE | {"steps": 2400, "extra_shapes": 0},
    "long": SIZE | {"steps": 12000, "extra_shapes": 0},
    "wide": SIZE | {"width": 256, "layers": 6, "heads": 8, "steps": 12000, "extra_shapes": 0},
    "data": SIZE | {"steps": 12000, "extra_shapes": 60000},  # more scenes of the recipe's kind, another seed
}


def job(run: Path, name: str, seed: int, save: Path | None, scale: float = 1.0) -> dict:
    """Train variant `name` with training seed `seed` on the cached tokens and judge it."""
    import torch

    sys.path.insert(0, str(HERE))
    from dalle import SEEN, captions, judge_set  # bench/dalle.py

    from pictext import training
    from pictext.api import load
    from pictext.dalle.io import DALLEPipeline, save_dalle
    from pictext.dalle.model import DALLE, DALLEConfig
    from pictext.dalle.train import (
        DALLERecipe,
        _fingerprint,
        caption_tokenizer,
        encode_images,
        recipe_forms,
        train_dalle,
    )
    from pictext.data.shapes import DEFAULT_HELD_OUT, ShapesWorld
    from pictext.vqgan.io import load_vqgan

    v, recipe = VARIANTS[name], DALLERecipe()
    device = training.default_device()
    vqgan = load_vqgan(run / "vqgan.safetensors").to(device).eval()
    forms = run / f"tokens-{_fingerprint(vqgan, recipe_forms(recipe))}.pt"  # the recipe's extra shapes, if built
    (cache,) = [path for path in run.glob("tokens-*.pt") if path != forms]  # the scenes and emoji
    saved = training.load_state(cache)
    tokens, texts = saved["tokens"], list(saved["captions"])
    if v.get("forms"):  # what train_pipeline adds for the recipe
        more, more_texts = encode_images(vqgan, recipe_forms(recipe), batch_size=512)
        tokens, texts = torch.cat([tokens, more]), texts + more_texts
    if v["extra_shapes"]:  # more pictures of the same world, another seed; held-out combinations still absent
        world = ShapesWorld(size=32, max_shapes=2, grey_fraction=0.1, length=v["extra_shapes"], seed=10_000)
        more, more_texts = encode_images(vqgan, world, batch_size=512)
        tokens, texts = torch.cat([tokens, more]), texts + more_texts
    tokenizer = caption_tokenizer(texts, recipe.text_vocab, recipe.text_len)
    ids = tokenizer(texts, truncate=True)
    config = DALLEConfig(
        text_vocab=tokenizer.vocab_size, image_vocab=vqgan.config.n_embed, text_len=recipe.text_len,
        image_grid=tokens.shape[-1], width=v["width"], layers=v["layers"], heads=v["heads"],
    )  # fmt: skip
    cfg = dataclasses.replace(
        recipe.train, steps=max(1, round(v["steps"] * scale)), batch_size=v["batch_size"], seed=seed
    )
    training.seed_everything(seed)
    model = DALLE(config)
    began = time.perf_counter()
    logs = train_dalle(model, tokens, ids, cfg, device=device)
    seconds = time.perf_counter() - began
    pipeline = DALLEPipeline(model.eval(), tokenizer, vqgan)
    if save is not None:
        save_dalle(pipeline, save / f"dalle-{name}-s{seed}.safetensors", half=True)
    clip = load("shapes", precision="fp32")
    row = {"variant": name, "seed": seed, "train_seconds": seconds, "pairs": len(texts),
           "final_image_loss": float(np.mean([x.image_loss for x in logs[-100:]]))}  # fmt: skip
    for split, combos in (("held_out", DEFAULT_HELD_OUT), ("seen", SEEN)):
        runs = [judge_set(pipeline, {"shapes": clip}, captions(combos), 3.0, s) for s in (0, 1, 2)]
        for key in ("oracle_accuracy", "oracle_accuracy_reranked", "color_accuracy", "shape_accuracy"):
            row[f"{split}_{key}"] = float(np.mean([r[key] for r in runs]))
    return row


def summarise(rows: list[dict]) -> dict:
    out = {}
    for name in VARIANTS:
        mine = [r for r in rows if r["variant"] == name]
        if not mine:
            continue
        entry = {
            "seeds": len(mine),
            **VARIANTS[name],
            "train_seconds": float(np.mean([r["train_seconds"] for r in mine])),
        }
        for key in ("held_out_oracle_accuracy", "held_out_oracle_accuracy_reranked", "held_out_shape_accuracy",
                    "seen_oracle_accuracy", "seen_oracle_accuracy_reranked", "final_image_loss"):  # fmt: skip
            values = [r[key] for r in mine if key in r]  # rows from before a key was measured lack it
            if not values:
                continue
            worst = max(values) if key == "final_image_loss" else min(values)
            entry |= {key: float(np.mean(values)), f"{key}_worst": float(worst)}
        out[name] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="the recipe's run folder (vqgan.safetensors, tokens)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=1, help="processes at once")
    parser.add_argument("--save", type=Path, help="write each trained pipeline here")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "dalle_scaling.json")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every variant's steps (smoke tests)")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # internal: NAME:SEED, run one job, print its row
    args = parser.parse_args()
    if args.job:
        name, seed = args.job.split(":")
        print("ROW " + json.dumps(job(args.run, name, int(seed), args.save, args.scale)), flush=True)
        return
    if not any(args.run.glob("tokens-*.pt")) or not (args.run / "vqgan.safetensors").is_file():
        sys.exit(f"{args.run}: no vqgan.safetensors and tokens-*.pt; run `pictext models build dalle` first")
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        sys.exit(f"--variants: unknown {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    queue = [(n, int(s)) for n in args.variants.split(",") for s in args.seeds.split(",")]
    queue.sort(key=lambda j: -VARIANTS[j[0]]["steps"] * VARIANTS[j[0]]["batch_size"])  # longest first
    env = os.environ | {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // max(1, args.jobs)))}
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or platform.machine()
    # rows of variants this run does not train are kept from --out, so one file holds every variant measured
    kept = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    running, began = [], time.perf_counter()
    rows = [r for r in kept if r["variant"] not in args.variants.split(",")]

    def write() -> None:  # after every job, so an interrupted run keeps what it finished
        out = {"summary": summarise(rows), "rows": rows, "seconds": time.perf_counter() - began,
               "notes": "transformers trained on the recipe's cached image tokens (its VQGAN); guidance 3, 16 "
                        "samples a caption, keep 1 by the shapes CLIP; mean and worst over training seeds",
               "machine": {"device": device, "jobs": args.jobs, "torch": torch.__version__,
                           "scale": args.scale}}  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        tmp.replace(args.out)

    while queue or running:
        while queue and len(running) < args.jobs:
            name, seed = queue.pop(0)
            cmd = [
                sys.executable,
                __file__,
                "--run",
                str(args.run),
                "--job",
                f"{name}:{seed}",
                "--scale",
                str(args.scale),
            ]
            cmd += ["--save", str(args.save)] if args.save and seed == 0 else []
            running.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True))
        time.sleep(1)
        for p in [p for p in running if p.poll() is not None]:
            running.remove(p)
            found = [line[4:] for line in p.stdout.read().splitlines() if line.startswith("ROW ")]
            if p.returncode or not found:
                print(f"a job failed (exit {p.returncode})", file=sys.stderr)
                continue
            rows.append(json.loads(found[-1]))
            print(rows[-1], flush=True)
            write()
    write()
    print(json.dumps(summarise(rows), indent=2))


if __name__ == "__main__":
    main()
