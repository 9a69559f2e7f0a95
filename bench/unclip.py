"""What the default unCLIP has learnt: the prior's embeddings, and the whole pipeline judged by the shapes oracle.

- Prior (`prior_cosine`): for held-out pairs of the shapes world (colour-shape combinations never trained on),
  the cosine between the prior's predicted image embedding for the caption and the true image's embedding,
  next to two baselines: the caption's text embedding itself, and the prediction for an unrelated caption.
- Pipeline (`oracle_accuracy`): pictures drawn for captions of held-out combinations ("a green triangle", "a small
  green triangle", "a large green triangle", ...), judged by `judge(...).dominant`; seen combinations too.
- Variations (`variation_oracle_accuracy`): 4 variations of real single-shape pictures; a variation passes when
  the oracle finds the source's colour and shape in it.

Pipeline and variations with the decoder's default guidance (1.5) and DDIM eta 1 (the defaults of `generate`
and `vary`: the headline), without guidance (1), and with deterministic DDIM (eta 0). Variations are also
measured, with the default sampler, on 24 other pictures (`variation_oracle_accuracy_fresh`): the guidance
default was chosen with them, not with the 12 above. (Guidance 3 was measured on an earlier decoder:
bench/README.md.)
Mean and worst over 3 sampling seeds; one trained model (the recipe's seed). Writes bench/results/unclip.json;
with UNCLIP_MODEL=NAME (another unCLIP, e.g. unclip-ru: the same English captions), bench/results/NAME.json.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pictext import hub
from pictext.data.shapes import DEFAULT_HELD_OUT, ShapesWorld, judge
from pictext.unclip.io import load_unclip
from pictext.unclip.train import image_embeddings, text_condition

SEEDS = (0, 1, 2)
FORMS = ("a {} {}", "a small {} {}", "a large {} {}")
SEEN = (("red", "circle"), ("green", "square"), ("blue", "triangle"), ("yellow", "cross"), ("purple", "circle"))
SAMPLES = 4
SAMPLERS = ({"guidance_scale": 1.5, "eta": 1.0}, {"guidance_scale": 1.0, "eta": 1.0},
            {"guidance_scale": 1.5, "eta": 0.0})  # fmt: skip
DEFAULT, UNGUIDED, OTHER = "guidance 1.5, eta 1", "guidance 1, eta 1", "guidance 1.5, eta 0"  # the first: the default


def prior_cosines(pipeline, split: str, n: int = 200) -> dict[str, float]:
    world = ShapesWorld(size=pipeline.decoder.config.resolution, split=split, seed=9, length=n)
    images, captions = zip(*(world[i] for i in range(n)))
    truth = image_embeddings(pipeline.clip, list(images))
    cond = text_condition(pipeline.clip, list(captions))
    out = {}
    for seed in SEEDS:
        g = torch.Generator().manual_seed(seed)
        predicted = pipeline.prior.generate(cond, generator=g)
        unrelated = predicted[torch.roll(torch.arange(n), 1 + n // 2)]
        out.setdefault("prior_cosine", []).append(F.cosine_similarity(predicted, truth).mean().item())
        out.setdefault("unrelated_caption_cosine", []).append(F.cosine_similarity(unrelated, truth).mean().item())
    text_alone = F.cosine_similarity(cond.embedding, truth).mean().item()
    return {
        "prior_cosine": float(np.mean(out["prior_cosine"])),
        "prior_cosine_worst": float(min(out["prior_cosine"])),
        "text_embedding_cosine": text_alone,
        "unrelated_caption_cosine": float(np.mean(out["unrelated_caption_cosine"])),
        "pairs": n,
    }


def oracle(pipeline, combos, seed: int, sampler: dict) -> float:
    shown = []
    for k, (color, shape) in enumerate(combos):
        for j, form in enumerate(FORMS):
            images = pipeline.generate(form.format(color, shape), n=SAMPLES, **sampler,
                                       seed=seed * 1000 + 10 * k + j)  # fmt: skip
            shown += [judge(image, color, shape).dominant for image in images]
    return float(np.mean(shown))


def variations(pipeline, seed: int, sampler: dict, n: int = 12, world_seed: int = 21) -> float:
    world = ShapesWorld(size=pipeline.decoder.config.resolution, split="all", seed=world_seed, length=n)
    passed = []
    for i in range(n):
        color, shape = world.label(i).split()
        for image in pipeline.vary(world[i][0], n=4, **sampler, seed=seed * 1000 + i):
            passed.append(judge(image, color, shape).dominant)
    return float(np.mean(passed))


def summarize(values: list[float]) -> dict[str, object]:
    return {"mean": float(np.mean(values)), "worst": float(min(values)), "seeds": values}


def summarize_run(prior: dict, by_sampler: dict, ceiling: float, fresh: dict) -> dict[str, float]:
    """The headline with the default sampler; no guidance and deterministic DDIM beside it."""
    main, unguided, other = by_sampler[DEFAULT], by_sampler[UNGUIDED], by_sampler[OTHER]
    return {
        "prior_cosine": prior["held_out"]["prior_cosine"],
        "prior_cosine_worst": prior["held_out"]["prior_cosine_worst"],
        "prior_text_embedding_baseline": prior["held_out"]["text_embedding_cosine"],
        "prior_unrelated_caption_baseline": prior["held_out"]["unrelated_caption_cosine"],
        "oracle_accuracy": main["held_out"]["mean"],
        "oracle_accuracy_worst": main["held_out"]["worst"],
        "oracle_accuracy_seen": main["seen"]["mean"],
        "variation_oracle_accuracy": main["variations"]["mean"],
        "variation_oracle_accuracy_worst": main["variations"]["worst"],
        "variation_oracle_accuracy_fresh": fresh["mean"],
        "variation_oracle_accuracy_fresh_worst": fresh["worst"],
        "oracle_on_real_held_out_images": ceiling,
        "oracle_accuracy_guidance_1": unguided["held_out"]["mean"],
        "oracle_accuracy_seen_guidance_1": unguided["seen"]["mean"],
        "variation_oracle_accuracy_guidance_1": unguided["variations"]["mean"],
        "oracle_accuracy_eta_0": other["held_out"]["mean"],
        "oracle_accuracy_seen_eta_0": other["seen"]["mean"],
        "variation_oracle_accuracy_eta_0": other["variations"]["mean"],
        "variation_oracle_accuracy_eta_0_worst": other["variations"]["worst"],
    }


def main() -> None:
    torch.manual_seed(0)
    pipeline = load_unclip(hub.resolve(os.environ.get("UNCLIP_MODEL", "unclip")))
    began = time.perf_counter()
    prior = {"held_out": prior_cosines(pipeline, "held_out"), "seen": prior_cosines(pipeline, "train")}
    print(prior, flush=True)
    by_sampler = {}
    for sampler in SAMPLERS:
        name = "guidance {guidance_scale:g}, eta {eta:g}".format(**sampler)
        held = summarize([oracle(pipeline, DEFAULT_HELD_OUT, s, sampler) for s in SEEDS])
        seen = summarize([oracle(pipeline, SEEN, s, sampler) for s in SEEDS])
        varied = summarize([variations(pipeline, s, sampler) for s in SEEDS])
        by_sampler[name] = {"held_out": held, "seen": seen, "variations": varied}
        print(name, by_sampler[name], flush=True)
    real = ShapesWorld(size=pipeline.decoder.config.resolution, split="held_out", seed=3, length=120)
    ceiling = float(np.mean([judge(real[i][0], *real.label(i).split()).dominant for i in range(len(real))]))
    fresh = summarize([variations(pipeline, s, SAMPLERS[0], n=24, world_seed=77) for s in SEEDS])
    print("fresh variations", fresh, flush=True)
    summary = summarize_run(prior, by_sampler, ceiling, fresh)
    held, seen = by_sampler[DEFAULT]["held_out"], by_sampler[DEFAULT]["seen"]
    varied = by_sampler[DEFAULT]["variations"]
    out = {
        "summary": summary,
        "prior": prior,
        "oracle": {"held_out": held, "seen": seen, "samples_per_caption": SAMPLES, "captions_per_split": 15},
        "variations": varied,
        "by_decoder_sampler": by_sampler,
        "settings": {
            "decoder_guidance": 1.5,
            "decoder_eta": {"generate": 1.0, "vary": 1.0},
            "prior_guidance": 1.0,
            "decoder_steps": 50,
            "prior_steps": 64,
            "prior_candidates": 2,
        },  # fmt: skip
        "model": os.environ.get("UNCLIP_MODEL", "unclip"),
        "notes": "one trained model (recipe seed 0); mean and worst over 3 sampling seeds; the default unclip's "
        "prior and decoder live in the default CLIP's space, trained on the shapes world and Google's emoji "
        "(bench/emoji_frechet.py); unclip-ru's in the shapes CLIP's, on the shapes world in both languages",
        "seconds": time.perf_counter() - began,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },  # fmt: skip
    }
    model = os.environ.get("UNCLIP_MODEL", "unclip")
    path = Path(__file__).parent / "results" / f"{Path(model).stem}.json"  # unclip.json, unclip-ru.json
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
