"""What the default DALL-E has learnt, judged by the shapes oracle: held-out and seen colour-shape combinations.

For every caption ("a green triangle", "a small green triangle", "a large green triangle" for each of the five
held-out combinations, and the same for five seen ones), at classifier-free guidance 1, 3 and 5 (temperature
1), and at guidance 3 with temperature 0.7, for three sampling seeds, 16 samples are drawn; and at guidance 3
as `generate` draws a shapes caption by default, guided by the caption and by its shape alone ("a triangle",
composable guidance, `shape_prompt`). Reported per sampler:

- `oracle_accuracy`: the share of all samples the oracle judges to show the caption (`judge(...).dominant`);
- `oracle_accuracy_reranked`: the share of captions whose best sample by CLIP score (keep 1 of 16) shows it,
  reranked by the CLIPs `generate` uses for the caption; `oracle_accuracy_reranked_by_NAME` by each of the
  `shapes` and `default` CLIPs, and by both (`shapes+default`: their cosines summed); `oracle_accuracy_any`:
  the share of captions with at least one right sample among the 16 (what a perfect reranker would keep);
- `color_accuracy`, `shape_accuracy`: the share of samples whose dominant object has the caption's colour, and
  the share whose dominant object has its shape, whatever the other attribute: which of the two fails.

The image tokenizer's own ceiling (`tokenizer_reconstructions_recognised`): the share of its reconstructions of
real single-shape pictures the oracle recognises, held-out and seen combinations.

Figures are the mean and the worst over the sampling seeds; one trained model (the recipe's seed; another file
with DALLE_MODEL=PATH). The summary takes `generate`'s defaults: guidance 3 with the shape prompt.
On emoji, when Google's emoji set is built: the default CLIP's score of samples for held-out emoji names next to
the score of the real held-out emoji with those names. Writes bench/results/dalle.json.
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
from pictext.dalle.io import load_dalle
from pictext.dalle.sampling import SamplingConfig
from pictext.data.shapes import COLORS, DEFAULT_HELD_OUT, SHAPES, ShapesWorld, judge
from pictext.generate.dalle import DALLEGenerator, DALLESettings, guides_for
from pictext.generate.rerank import clip_scores

RERANKERS = ("shapes", "default")
SAMPLES, SEEDS = 16, (0, 1, 2)
# (guidance scale, temperature, guided by the shape alone too)
SAMPLERS = ((1.0, 1.0, False), (3.0, 1.0, False), (5.0, 1.0, False), (3.0, 0.7, False), (3.0, 1.0, True))
DEFAULT = (3.0, 1.0, True)  # DALLESettings' defaults: the summary's row
FORMS = ("a {} {}", "a small {} {}", "a large {} {}")
SEEN = (("red", "circle"), ("green", "square"), ("blue", "triangle"), ("yellow", "cross"), ("purple", "circle"))


def captions(combos) -> list[tuple[str, str, str]]:
    return [(form.format(c, s), c, s) for c, s in combos for form in FORMS]


def judge_set(pipeline, clips, items, guidance: float, seed: int, temperature: float = 1.0,
              shape_prompt: bool = False) -> dict[str, float]:  # fmt: skip
    shown, any_right, colors, shapes = [], [], [], []
    reranked = {name: [] for name in [*clips, "+".join(clips)]}
    for k, (caption, color, shape) in enumerate(items):
        cfg = SamplingConfig(guidance_scale=guidance, temperature=temperature)
        _, guides = guides_for(caption, DALLESettings(shape_prompt=shape_prompt))
        images = pipeline.draw(caption, SAMPLES, cfg, seed=seed * 1000 + k, guides=guides)
        verdicts = [judge(image, color, shape) for image in images]
        scores = {name: clip_scores(images, caption, clip) for name, clip in clips.items()}
        scores["+".join(clips)] = sum(scores.values())  # the CLIPs together: their cosines summed
        for name, s in scores.items():
            reranked[name].append(verdicts[int(np.argmax(s))].dominant)
        shown += [v.dominant for v in verdicts]
        any_right.append(any(v.dominant for v in verdicts))
        colors += [v.largest is not None and v.largest.color == color for v in verdicts]
        shapes += [v.largest is not None and v.largest.shape == shape for v in verdicts]
    used = "+".join(DALLEGenerator.defaults(items[0][0])["clip"])  # the CLIPs `generate` reranks these captions with
    used = used if used in reranked else next(iter(clips))
    return {"oracle_accuracy": float(np.mean(shown)), "oracle_accuracy_reranked": float(np.mean(reranked[used])),
            "oracle_accuracy_any": float(np.mean(any_right)),
            **{f"oracle_accuracy_reranked_by_{name}": float(np.mean(v)) for name, v in reranked.items()},
            "color_accuracy": float(np.mean(colors)), "shape_accuracy": float(np.mean(shapes))}  # fmt: skip


@torch.no_grad()
def tokenizer_ceiling(pipeline, n: int = 200) -> dict[str, float]:
    """The share of the image tokenizer's reconstructions of real single-shape pictures the oracle recognises."""
    from pictext.images.tensors import to_images, to_pixels

    out = {}
    for split in ("held_out", "train"):
        world = ShapesWorld(size=pipeline.resolution, split=split, seed=5, length=n)
        images = [world[i][0] for i in range(n)]
        codes = pipeline.image_tokenizer.encode(to_pixels(images, pipeline.resolution)).indices
        rebuilt = to_images(pipeline.image_tokenizer.decode_indices(codes).clamp(-1, 1))
        out[split] = float(np.mean([judge(r, *world.label(i).split()).dominant for i, r in enumerate(rebuilt)]))
    return out


def emoji_scores(pipeline, n: int = 40) -> dict[str, float] | None:
    """CLIP score (default CLIP) of one DALL-E sample per held-out emoji name, and of the real emoji."""
    path = hub.resolve("default")
    folder = hub.home() / "data" / "emoji" / "held_out"
    if not folder.is_dir():
        return None
    from pictext.data.emoji import named_images

    clip = load(path)
    pngs, names = named_images(folder.parent, "held_out")
    rng = np.random.default_rng(0)
    pick = rng.choice(len(names), size=min(n, len(names)), replace=False)
    fake, real = [], []
    for i in pick:
        image = pipeline.draw(names[i], 1, SamplingConfig(guidance_scale=3.0), seed=int(i))[0]
        fake.append(float(clip_scores([image], names[i], clip)[0]))
        real.append(float(clip_scores([pngs[i]], names[i], clip)[0]))
    return {"emoji_clip_score_samples": float(np.mean(fake)), "emoji_clip_score_real": float(np.mean(real)),
            "emoji_names": len(pick)}  # fmt: skip


def main() -> None:
    torch.manual_seed(0)
    pipeline = load_dalle(hub.resolve(os.environ.get("DALLE_MODEL", "dalle")))
    clips = {name: load(name, precision="fp32") for name in RERANKERS}
    held, seen = captions(DEFAULT_HELD_OUT), captions(SEEN)
    assert not set(SEEN) & set(DEFAULT_HELD_OUT) and all(c in COLORS and s in SHAPES for c, s in SEEN)
    rows = []
    began = time.perf_counter()
    for split, items in (("held_out", held), ("seen", seen)):
        for guidance, temperature, shape_prompt in SAMPLERS:
            runs = [judge_set(pipeline, clips, items, guidance, seed, temperature, shape_prompt) for seed in SEEDS]
            row = {"split": split, "guidance_scale": guidance, "temperature": temperature,
                   "shape_prompt": shape_prompt, "captions": len(items), "samples_each": SAMPLES}  # fmt: skip
            for key in runs[0]:
                values = [r[key] for r in runs]
                row |= {key: float(np.mean(values)), f"{key}_worst": float(min(values)), f"{key}_seeds": values}
            rows.append(row)
            print(row, flush=True)
    emoji = emoji_scores(pipeline)
    ceiling = tokenizer_ceiling(pipeline)
    main_row = next(r for r in rows if r["split"] == "held_out"
                    and (r["guidance_scale"], r["temperature"], r["shape_prompt"]) == DEFAULT)  # fmt: skip
    summary = {
        "oracle_accuracy": main_row["oracle_accuracy"],
        "oracle_accuracy_worst": main_row["oracle_accuracy_worst"],
        "oracle_accuracy_reranked": main_row["oracle_accuracy_reranked"],
        "oracle_accuracy_reranked_worst": main_row["oracle_accuracy_reranked_worst"],
        "oracle_accuracy_any": main_row["oracle_accuracy_any"],
        **{k: main_row[k] for k in (f"oracle_accuracy_reranked_by_{n}" for n in [*RERANKERS, "+".join(RERANKERS)])},
        "color_accuracy": main_row["color_accuracy"],
        "shape_accuracy": main_row["shape_accuracy"],
        "tokenizer_reconstructions_recognised": ceiling["held_out"],
        "tokenizer_reconstructions_recognised_seen": ceiling["train"],
    } | (emoji or {})
    seconds = time.perf_counter() - began
    out = {
        "summary": summary,
        "rows": rows,
        "notes": "held-out combinations never appear in the DALL-E's (or its VQGAN's) training data; one trained "
        "model, mean and worst over 3 sampling seeds; oracle_accuracy_reranked: reranked by the CLIPs `generate` uses "
        f"for shapes captions ({' + '.join(DALLEGenerator.defaults(held[0][0])['clip'])}, cosines summed); "
        "summary at guidance 3, temperature 1, guided by the caption and its shape alone (shape_prompt)",
        "seconds": seconds,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },  # fmt: skip
    }
    path = Path(__file__).parent / "results" / "dalle.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
