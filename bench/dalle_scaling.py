"""What more training buys the default DALL-E: transformer steps, size and data against the shapes oracle.

Every variant trains a transformer on the recipe's own image tokens (its VQGAN and token caches, from
`pictext models build dalle`: $PICTEXT_HOME/models/dalle.run; the variants' extra pictures are encoded once and
cached there too) for 3 training seeds, rounds it to float16 as it would ship, then draws 16 samples per caption
for the held-out and the seen colour-shape captions of bench/dalle.py over 3 sampling seeds, with `generate`'s
defaults (guidance 3 with the shape prompt, the best of 16 kept by the shapes and default CLIPs), and reports the
oracle's accuracy on every sample and on the one kept. Figures per variant: the mean and the worst over the
training seeds (each the mean over sampling seeds). Rows in bench/results/dalle_scaling.json measured before
2026-12 were judged with plain guidance and the shapes CLIP alone. `forms-60k` is today's `DALLERecipe`; `recipe`
is the one before it (20,000 form-only shapes), kept under its name so that old rows still read.

Jobs run as parallel processes (`--jobs`); on a GPU they share it. Writes bench/results/dalle_scaling.json
(or `--out`) after every job, keeping the rows it already holds of variants this run does not train; with
`--save DIR`, each variant's seed-0 pipeline too (fp16): the recipe's seed, so a winning variant's file is
what the recipe with its settings trains. `--train-only --save DIR` trains and saves every seed without judging
(on a machine lent for a few minutes); `--judge DIR/*.safetensors` judges such files later, anywhere.

    python bench/dalle_scaling.py --run ~/.cache/pictext/models/dalle.run --variants forms-60k,recipe --jobs 4
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
VARIANTS = {  # name: transformer size, training length, form-only shapes, extra pictures (`extra_sets`)
    # "forms": single shapes beside the recipe's scenes, half of them in unnamed hues captioned by form alone
    # ("a small triangle"), for the transformer only (`recipe_forms`): shape taught apart from colour
    "recipe": SIZE | {"steps": 9600, "extra": (), "forms": 20_000},  # DALLERecipe until 2026-12-01
    "forms-4800": SIZE | {"steps": 4800, "extra": (), "forms": 20_000},  # the recipe before twice the steps
    "no-forms": SIZE | {"steps": 4800, "extra": ()},  # the recipe before the form-only shapes
    "half": SIZE | {"steps": 2400, "extra": ()},
    "long": SIZE | {"steps": 12000, "extra": ()},
    "wide": SIZE | {"width": 256, "layers": 6, "heads": 8, "steps": 12000, "extra": ()},
    "data": SIZE | {"steps": 12000, "extra": ("scenes",)},
    # the recipe with more of its two kinds of extra picture, or a larger transformer
    "forms-scenes": SIZE | {"steps": 9600, "extra": ("scenes",), "forms": 20_000},
    "forms-more": SIZE | {"steps": 9600, "extra": ("forms",), "forms": 20_000},  # 60,000 form-only shapes in all
    "forms-60k": SIZE | {"steps": 9600, "extra": (), "forms": 60_000},  # DALLERecipe now (`forms_length`)
    "forms-wide": SIZE | {"width": 256, "layers": 6, "heads": 8, "steps": 9600, "extra": (), "forms": 20_000},
}


def extra_sets() -> dict:
    """More pictures of the recipe's kinds, other seeds; the held-out combinations still absent."""
    from pictext.data.shapes import ShapesWorld

    return {
        "scenes": ShapesWorld(size=32, max_shapes=2, grey_fraction=0.1, length=60_000, seed=10_000),
        "forms": ShapesWorld(size=32, max_shapes=1, grey_fraction=0.5, unnamed_colors=True, length=40_000, seed=20_000),
    }


def job(run: Path, name: str, seed: int, save: Path | None, scale: float = 1.0, judge: bool = True) -> dict:
    """Train variant `name` with training seed `seed` on the cached tokens and judge it."""
    import torch

    from pictext import training
    from pictext.dalle.io import DALLEPipeline, save_dalle
    from pictext.dalle.model import DALLE, DALLEConfig
    from pictext.dalle.recipe import DALLERecipe, caption_tokenizer, recipe_forms
    from pictext.dalle.train import _fingerprint, encode_images, train_dalle
    from pictext.vqgan.io import load_vqgan

    v, recipe = VARIANTS[name], DALLERecipe()
    device = training.default_device()
    vqgan = load_vqgan(run / "vqgan.safetensors").to(device).eval()
    forms = {
        n: recipe_forms(dataclasses.replace(recipe, forms_length=n))
        for n in {x.get("forms", 0) for x in VARIANTS.values()} - {0}
    }
    extras = {"forms": forms[v["forms"]]} if v.get("forms") else {}
    extras |= {f"extra-{k}": data for k, data in extra_sets().items() if k in v["extra"]}
    # token caches (encode_images' own, in the run folder): the recipe's scenes and emoji are the one file that
    # is none of the extra sets'
    named = {run / f"tokens-{_fingerprint(vqgan, data)}.pt" for data in [*forms.values(), *extra_sets().values()]}
    (cache,) = [path for path in run.glob("tokens-*.pt") if path not in named]
    saved = training.load_state(cache)
    tokens, texts = saved["tokens"].long(), list(saved["captions"])  # int16 in a carried cache
    for data in extras.values():
        more, more_texts = encode_images(vqgan, data, batch_size=512, cache=run)
        tokens, texts = torch.cat([tokens, more.long()]), texts + more_texts
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
    row = {"variant": name, "seed": seed, "train_seconds": seconds, "pairs": len(texts),
           "final_image_loss": float(np.mean([x.image_loss for x in logs[-100:]]))}  # fmt: skip
    with torch.no_grad():  # judged as it would ship: every weight rounded to float16 (`save_dalle(half=True)`)
        for module in (model, vqgan):
            for t in module.state_dict().values():
                if t.is_floating_point():
                    t.copy_(t.half().float())
    return row | judged(pipeline) if judge else row


def judged(pipeline) -> dict:
    """The oracle on `pipeline`'s drawings of the held-out and seen captions, sampling seeds 0-2, with generate's
    defaults: the shape prompt, the best of 16 kept by the shapes and default CLIPs together."""
    sys.path.insert(0, str(HERE))
    from dalle import SEEN, captions, judge_set  # bench/dalle.py

    from pictext.api import load
    from pictext.data.shapes import DEFAULT_HELD_OUT

    clips = {name: load(name, precision="fp32") for name in ("shapes", "default")}
    row = {}
    for split, combos in (("held_out", DEFAULT_HELD_OUT), ("seen", SEEN)):
        runs = [judge_set(pipeline, clips, captions(combos), 3.0, s, shape_prompt=True) for s in (0, 1, 2)]
        for key in ("oracle_accuracy", "oracle_accuracy_reranked", "oracle_accuracy_reranked_by_shapes",
                    "oracle_accuracy_any", "color_accuracy", "shape_accuracy"):  # fmt: skip
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
        }
        if all("train_seconds" in r for r in mine):  # rows judged from saved files (--judge) lack it
            entry["train_seconds"] = float(np.mean([r["train_seconds"] for r in mine]))
        for key in ("held_out_oracle_accuracy", "held_out_oracle_accuracy_reranked", "held_out_shape_accuracy",
                    "held_out_oracle_accuracy_reranked_by_shapes", "held_out_oracle_accuracy_any",
                    "seen_oracle_accuracy", "seen_oracle_accuracy_reranked", "final_image_loss"):  # fmt: skip
            values = [r[key] for r in mine if key in r]  # rows from before a key was measured lack it
            if not values:
                continue
            worst = max(values) if key == "final_image_loss" else min(values)
            entry |= {key: float(np.mean(values)), f"{key}_worst": float(worst)}
        out[name] = entry
    return out


def judge_files(files: list[Path], out: Path, trained_on: str | None = None) -> None:
    """Judge saved pipelines on this machine (trained elsewhere: with --train-only on a GPU, say) and put their
    rows into `out`, replacing those of the same variant and seed; the rest of `out` is kept. `trained_on` names
    the machine that trained them, in each row."""
    import re

    from pictext.dalle.io import load_dalle

    data = json.loads(out.read_text()) if out.is_file() else {"rows": [], "machine": {}}
    for path in files:
        found = re.fullmatch(r"dalle-(.+)-s(\d+)\.safetensors", path.name)
        if found is None or found[1] not in VARIANTS:
            sys.exit(f"--judge {path}: not a file --save wrote (dalle-VARIANT-sSEED.safetensors)")
        key = {"variant": found[1], "seed": int(found[2])}
        row = key | {"judged_from": path.name, "trained_on": trained_on} | judged(load_dalle(path))
        data["rows"] = [r for r in data["rows"] if {k: r[k] for k in key} != key] + [row]
        print(row, flush=True)
    data["summary"] = summarise(data["rows"])
    data["machine"]["judged_on"] = platform.processor() or platform.machine()
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="the recipe's run folder (vqgan.safetensors, tokens)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=1, help="processes at once")
    parser.add_argument("--save", type=Path, help="write each trained pipeline here")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "dalle_scaling.json")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every variant's steps (smoke tests)")
    parser.add_argument("--deadline", type=float, help="seconds; then stop the jobs still running and write")
    parser.add_argument("--logs", type=Path, help="each job's progress (stderr) to a file here")
    parser.add_argument("--train-only", action="store_true", help="no judging (with --save: every seed saved)")
    parser.add_argument(
        "--judge",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="judge pipelines saved by --save (dalle-VARIANT-sSEED.safetensors) here, into --out",
    )
    parser.add_argument("--trained-on", help="with --judge: the machine that trained the files, for the record")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # internal: NAME:SEED, run one job, print its row
    args = parser.parse_args()
    if args.run is None and not args.judge:
        parser.error("--run is required (the recipe's run folder), unless --judge")
    if args.job:
        name, seed = args.job.split(":")
        row = job(args.run, name, int(seed), args.save, args.scale, not args.train_only)
        print("ROW " + json.dumps(row), flush=True)
        return
    if args.judge:
        judge_files(args.judge, args.out, args.trained_on)
        return
    if not any(args.run.glob("tokens-*.pt")) or not (args.run / "vqgan.safetensors").is_file():
        sys.exit(f"{args.run}: no vqgan.safetensors and tokens-*.pt; run `pictext models build dalle` first")
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        sys.exit(f"--variants: unknown {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
    queue = [(n, int(s)) for n in args.variants.split(",") for s in args.seeds.split(",")]
    queue.sort(key=lambda j: (j[1], -VARIANTS[j[0]]["steps"] * VARIANTS[j[0]]["width"] ** 2))  # seed 0s first
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
                        "samples a caption with the shape prompt, keep 1 by the shapes and default CLIPs (generate's "
                        "defaults); mean and worst over training seeds",
               "machine": {"device": device, "jobs": args.jobs, "torch": torch.__version__,
                           "scale": args.scale}}  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=2) + "\n")
        tmp.replace(args.out)

    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    while queue or running:
        if args.deadline and time.perf_counter() - began > args.deadline:
            for p, _, _ in running:
                p.kill()
            print(f"--deadline: stopped {len(running)} running and {len(queue)} queued jobs", file=sys.stderr)
            break
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
            cmd += ["--save", str(args.save)] if args.save and (seed == 0 or args.train_only) else []
            cmd += ["--train-only"] if args.train_only else []
            log = args.logs / f"{name}-{seed}.log" if args.logs else None
            with open(log or os.devnull, "w") as err:  # the child keeps its own copy of the handle
                proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err if log else None, text=True)
            running.append((proc, f"{name}:{seed}", log))
        time.sleep(1)
        for job_ in [j for j in running if j[0].poll() is not None]:
            running.remove(job_)
            p, name_seed, log = job_
            found = [line[4:] for line in p.stdout.read().splitlines() if line.startswith("ROW ")]
            if p.returncode or not found:
                tail = log.read_text()[-2000:] if log else ""
                print(f"job {name_seed} failed (exit {p.returncode}) {tail}", file=sys.stderr)
                continue
            rows.append(json.loads(found[-1]))
            print(rows[-1], flush=True)
            write()
    write()
    print(json.dumps(summarise(rows), indent=2))


if __name__ == "__main__":
    main()
