"""The default VQGAN's reconstructions of a drawing style it never trained on, and its codebook usage.

The default VQGAN trains on Google's, Twitter's and OpenMoji's emoji (and the shapes world). This reconstructs
Facebook's emoji (npm's emoji-datasource-facebook, never trained on; its held-out split, whose emoji names were
also held out of every training set) at 64 px, and Google's own held-out emoji, and reports PSNR (mean and
worst decile) and the share of the 512 codes the reconstructions use (over all three sets). Also the shapes
world at 64 px: the share of reconstructions of single-shape pictures in which the oracle still finds the
shape's colour and shape (`judge(...).dominant`), the pictures VQGAN+CLIP has to draw through this decoder.
No peer: taming's released models are 256 px ImageNet models that cannot be fetched here;
`tests/test_vqgan.py` proves the import from taming's format is exact instead.

Needs the Facebook set: `pictext data build emoji --vendor facebook` (npm), or $PICTEXT_HOME pointing at one.
Writes bench/results/vqgan.json (summary keys `heldout_psnr_db`, target >= 24, and `codebook_usage`,
target >= 0.8).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch

from pictext import hub
from pictext.data.emoji import ensure_emoji, named_images
from pictext.images.decode import decode_image
from pictext.images.tensors import to_pixels
from pictext.vqgan.io import load_vqgan
from pictext.vqgan.loss import psnr


def measure(model, pngs: list[Path], codes: torch.Tensor, batch: int = 64) -> dict[str, float]:
    """PSNR over `pngs`; marks the codes used in `codes` (all sets together) and reports this set's share."""
    scores, own = [], torch.zeros_like(codes)
    for start in range(0, len(pngs), batch):
        x = to_pixels([decode_image(p) for p in pngs[start : start + batch]], model.config.resolution)
        with torch.no_grad():
            out = model(x)
        scores.append(psnr(x, out.reconstruction))
        own[out.quantized.indices.flatten()] = True
    codes |= own
    values = torch.cat(scores).numpy()
    return {
        "images": len(values),
        "psnr_db": float(values.mean()),
        "psnr_worst_decile_db": float(np.percentile(values, 10)),
        "codebook_usage": float(own.float().mean()),
    }


def shapes_recognised(model, n: int = 200) -> dict[str, float]:
    """The oracle on reconstructions of single-shape pictures, held-out and seen colour-shape combinations."""
    from pictext.data.shapes import ShapesWorld, judge
    from pictext.images.tensors import to_images

    out = {}
    for split in ("held_out", "train"):
        world = ShapesWorld(size=64, split=split, seed=7, length=n)
        with torch.no_grad():
            pictures = to_images(model(to_pixels([world[i][0] for i in range(n)], 64)).reconstruction.clamp(-1, 1))
        out[split] = float(np.mean([judge(pictures[i], *world.label(i).split()).dominant for i in range(n)]))
    return out


def main() -> None:
    spec = sys.argv[1] if len(sys.argv) > 1 else "vqgan"
    model = load_vqgan(hub.resolve(spec))
    rows, codes = [], torch.zeros(model.config.n_embed, dtype=torch.bool)
    for vendor, split in (("facebook", "held_out"), ("facebook", "train"), ("google", "held_out")):
        pngs, _ = named_images(ensure_emoji(hub.home(), vendor), split)
        row = {"system": "pictext", "model": spec, "data": f"{vendor} {split}", **measure(model, pngs, codes)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    heldout = rows[0]
    summary = {
        "heldout_psnr_db": round(heldout["psnr_db"], 2),
        "heldout_psnr_worst_decile_db": round(heldout["psnr_worst_decile_db"], 2),
        "codebook_usage": round(float(codes.float().mean()), 3),
    }
    shapes = shapes_recognised(model)
    summary["shapes_reconstructions_recognised"] = round(shapes["held_out"], 3)
    machine = {"cpu": platform.processor() or platform.machine(), "threads": os.cpu_count(), "torch": torch.__version__}
    out = {"summary": summary, "rows": rows, "shapes_recognised": shapes, "machine": machine}
    (Path(__file__).parent / "results" / "vqgan.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
