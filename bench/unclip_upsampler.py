"""What unCLIP's optional upsampler (32 -> 64 px) adds, on the shapes world.

- Real held-out pictures (colour-shape combinations the models never saw), drawn at 64 px, shrunk to 32 px
  by area and enlarged again: by the upsampler, and by bilinear and bicubic resizing. Reported: PSNR against
  the real 64 px picture, and the share in which the oracle finds the picture's colour and shape.
- The decoder's variations of bench/unclip.py's 12 pictures (4 each, DDIM eta 1): the share the oracle
  recognises at the decoder's 32 px, after the upsampler at 64 px, and after bicubic enlargement to 64 px
  (the same pictures; the oracle's thresholds are in pixels, so size alone can change its verdict).

A diffusion upsampler draws sharp detail it has to guess, so its PSNR can sit below a smooth resize's while
the shapes come out cleaner; the oracle's share is the measure that matters here. Mean and worst over 3
sampling seeds. UNCLIP_MODEL names the file (default `unclip`); it must hold an upsampler
(`pictext train unclip-upsampler`). Writes bench/results/unclip_upsampler.json.
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
from pictext.config import to_dict
from pictext.data.shapes import ShapesWorld, judge
from pictext.images.tensors import to_images, to_pixels
from pictext.unclip.io import load_unclip
from pictext.unclip.train import image_embeddings

SEEDS = (0, 1, 2)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:  # pixels in [-1, 1]
    mse = ((a - b) / 2).pow(2).flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())


def recognised(pixels: torch.Tensor, labels: list[str]) -> float:
    return float(np.mean([judge(im, *label.split()).dominant for im, label in zip(to_images(pixels), labels)]))


def enlargements(pipeline, seed: int, n: int = 48) -> dict[str, float]:
    up = pipeline.upsampler
    world = ShapesWorld(size=up.config.resolution, split="held_out", seed=7, length=n)
    labels = [world.label(i) for i in range(n)]
    real = to_pixels([world[i][0] for i in range(n)], up.config.resolution)
    small = up.shrink(real)
    size = real.shape[-2:]
    drawn = up.generate(small, pipeline.upsample_steps, torch.Generator().manual_seed(seed))
    smooth = {mode: F.interpolate(small, size=size, mode=mode, align_corners=False).clamp(-1, 1)
              for mode in ("bilinear", "bicubic")}  # fmt: skip
    return {
        "psnr_db": psnr(drawn, real),
        "bilinear_psnr_db": psnr(smooth["bilinear"], real),
        "bicubic_psnr_db": psnr(smooth["bicubic"], real),
        "recognised": recognised(drawn, labels),
        "bicubic_recognised": recognised(smooth["bicubic"], labels),
        "real_recognised": recognised(real, labels),
    }


def variations(pipeline, seed: int, n: int = 12) -> dict[str, float]:
    world = ShapesWorld(size=pipeline.decoder.config.resolution, split="all", seed=21, length=n)
    labels = [world.label(i) for i in range(n) for _ in range(4)]
    embeddings = image_embeddings(pipeline.clip, [world[i][0] for i in range(n)]).repeat_interleave(4, dim=0)
    g = torch.Generator().manual_seed(seed)
    small = pipeline.decoder.generate(embeddings, 1.0, 50, g, eta=1.0)
    large = pipeline.upsampler.generate(small, pipeline.upsample_steps, g, eta=1.0)
    size = large.shape[-2:]
    smooth = F.interpolate(small, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)  # the size alone
    return {"variations_recognised_32": recognised(small, labels),
            "variations_recognised_64": recognised(large, labels),
            "variations_recognised_64_bicubic": recognised(smooth, labels)}  # fmt: skip


def main() -> None:
    torch.manual_seed(0)
    name = os.environ.get("UNCLIP_MODEL", "unclip")
    pipeline = load_unclip(hub.resolve(name))
    if pipeline.upsampler is None:
        raise SystemExit(f"{name} has no upsampler; train one with `pictext train unclip-upsampler --out FILE`")
    began = time.perf_counter()
    runs = []
    with torch.no_grad():
        for seed in SEEDS:
            runs.append(enlargements(pipeline, seed) | variations(pipeline, seed))
            print(runs[-1], flush=True)
    summary = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        summary |= {key: float(np.mean(values)), f"{key}_worst": float(min(values))}
    out = {
        "summary": summary,
        "runs": runs,
        "settings": {"upsampler": to_dict(pipeline.upsampler.config), "upsample_steps": pipeline.upsample_steps},
        "notes": "one trained upsampler; mean and worst over 3 sampling seeds; held-out combinations only for the "
        "enlargements; PSNR of pixels in [0, 1]",
        "seconds": time.perf_counter() - began,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },  # fmt: skip
    }
    path = Path(__file__).parent / "results" / "unclip_upsampler.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
