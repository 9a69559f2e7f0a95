"""How far generated emoji are from real ones: a Fréchet distance in the default CLIP's feature space.

For 150 held-out emoji names (never in a training caption of any shipped model), one picture per name from the
default DALL-E (guidance 3, the best of 4 by the default CLIP) and one from the default unCLIP (no decoder
guidance, its default), each set's image features against the real held-out emoji of those names (Google's
drawings, 64 px). Both generators lean on the default CLIP (DALL-E reranks with it, unCLIP draws in its space), so
every distance is also measured in the space of `JUDGE_EMOJI_CLIP` (default `default-resnet-s1`, the default
recipe trained with seed 1, left in the cache by bench/default_model.py), a CLIP neither of them used.
Baselines make the numbers readable: as many other held-out emoji (other names, same style: what a set of
right-looking but wrong emoji scores at this sample size), the real emoji shrunk to the generators' 32 px (the
cost of resolution alone), and Facebook's drawings of the same emoji (a real change of style). Not comparable
to published FIDs (Inception features, 50,000 pictures). Writes bench/results/emoji_frechet.json.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pictext import hub
from pictext.api import embed_images, load
from pictext.dalle.io import load_dalle
from pictext.dalle.sampling import SamplingConfig
from pictext.data.emoji import ensure_emoji, named_images
from pictext.evaluate import frechet_distance
from pictext.generate.rerank import clip_scores
from pictext.unclip.io import load_unclip

NAMES, DALLE_SAMPLES = 150, 4


def features(clip, images) -> np.ndarray:
    _, vectors, _ = embed_images(clip, list(images))
    return vectors


def distances(clips, real, images) -> dict[str, float]:
    """Fréchet distance of `images` to the real emoji in the default CLIP's space (`fd`) and the judge's."""
    (default, judge), images = clips, list(images)
    return {"fd": frechet_distance(features(default, images), real[0]),
            "fd_judge": frechet_distance(features(judge, images), real[1]), "pictures": len(images)}  # fmt: skip


def main() -> None:
    torch.manual_seed(0)
    clip = load("default", precision="fp32")
    judge = load(os.environ.get("JUDGE_EMOJI_CLIP", "default-resnet-s1"), precision="fp32")
    clips = (clip, judge)
    pngs, names = named_images(ensure_emoji(hub.home()), "held_out")
    base = [i for i, p in enumerate(pngs) if "-1f3f" not in p.stem]  # no skin-tone variants: one picture a name
    pick = np.sort(np.random.default_rng(0).choice(base, size=min(NAMES, len(base)), replace=False))
    real = tuple(features(c, [pngs[i] for i in pick]) for c in clips)
    fb_folder = ensure_emoji(hub.home(), "facebook") / "held_out"
    facebook = [fb_folder / pngs[i].name for i in pick if (fb_folder / pngs[i].name).is_file()]
    rows, began = {}, time.perf_counter()
    others = [i for i in base if i not in set(pick.tolist())][: len(pick)]  # other held-out emoji: other names
    rows["other_real_emoji"] = distances(clips, real, [pngs[i] for i in others])
    small = [Image.open(pngs[i]).convert("RGBA").resize((32, 32), Image.Resampling.LANCZOS) for i in pick]
    rows["real_at_32px"] = distances(clips, real, small)
    rows["facebook_same_emoji"] = distances(clips, real, facebook)
    dalle, unclip = load_dalle(hub.resolve("dalle")), load_unclip(hub.resolve("unclip"))
    drawn, took = [], time.perf_counter()
    for k, i in enumerate(pick):
        samples = dalle.draw(names[i], DALLE_SAMPLES, SamplingConfig(guidance_scale=3.0), seed=k)
        drawn.append(samples[int(np.argmax(clip_scores(samples, names[i], clip)))])
    rows["dalle"] = distances(clips, real, drawn) | {"seconds_per_name": (time.perf_counter() - took) / len(pick)}
    drawn, took = [], time.perf_counter()
    for k, i in enumerate(pick):
        drawn += unclip.generate(names[i], 1, seed=k)
    rows["unclip"] = distances(clips, real, drawn) | {"seconds_per_name": (time.perf_counter() - took) / len(pick)}
    for name, row in rows.items():
        print(f"{name:22s} FD {row['fd']:.3f}, judge's space {row['fd_judge']:.3f}  ({row['pictures']} pictures)")
    out = {
        "summary": {f"fd{tail}_{k}": v[f"fd{tail}"] for tail in ("", "_judge") for k, v in rows.items()},
        "rows": rows,
        "notes": "Fréchet distance of default-CLIP image features (128-d, unit norm) against the real held-out "
        "Google emoji of the same names, and in the judge CLIP's space (fd_judge); DALL-E keeps the best of 4 by "
        "the default CLIP; not comparable to FIDs",
        "judge_clip": os.environ.get("JUDGE_EMOJI_CLIP", "default-resnet-s1"),
        "seconds": time.perf_counter() - began,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },  # fmt: skip
    }
    path = Path(__file__).parent / "results" / "emoji_frechet.json"
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
