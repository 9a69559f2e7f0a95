"""pictext at the published sizes, with random weights (the published files cannot be downloaded here):

- VQGAN+CLIP, one optimisation step at 256 and 512 px: taming's ImageNet f16-16384 VQGAN (the registry's
  `taming/imagenet-f16-16384` architecture), OpenAI's ViT-B/32 as the guide, 32 cutouts of 224 px; against the
  same step composed from taming-transformers' decoder, open_clip's model and nerdyrodent/VQGAN-CLIP's cutouts
  (bench/vqgan_clip_step.py's reference, at this size). Seconds per step, peak memory, `ratio_vs_reference`.
- CLIP ViT-L/14 image encoding, pictext against open_clip, identical weights, batch 4, fp32.
- The minutes a 300-step VQGAN+CLIP run at 256 px takes here: 300 times the measured step (an estimate).

Writes bench/results/real_size.json.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
import vqgan_clip_step as step  # bench/vqgan_clip_step.py: the step on both sides, the reference cutouts

from pictext import published
from pictext.clip.io import load_clip
from pictext.training import cpu_has_fast_bf16
from pictext.vqgan.convert import config_from_taming

SIZES = tuple(int(s) for s in os.environ.get("REAL_SIZES", "256,512").split(","))
PRECISIONS = os.environ.get("REAL_PRECISIONS", "fp32").split(",")  # "fp32,bf16" adds the bf16 autocast step


def vqgan_clip_rows(rate: float) -> list[dict]:
    step.CUTOUTS = 32
    clip, ref_clip, augment, target = step.setup()
    reference = published.registry()["taming/imagenet-f16-16384"].reference["taming"]
    config = config_from_taming(reference, "taming.models.vqgan.VQModel")
    rows = []
    for size in SIZES:
        before = peak_mb()
        rows += step.measure_size(size, clip, ref_clip, augment, target, PRECISIONS, rate, config)
        for row in rows[-(len(PRECISIONS) + 1) :]:
            row["process_peak_mb"] = round(peak_mb(), 0)
        print(f"{size} px: process peak {peak_mb():.0f} MB (was {before:.0f})", flush=True)
    return rows


def vit_l_rows() -> list[dict]:
    import open_clip

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = open_clip.create_model("ViT-L-14-quickgelu").eval()
    path = Path("/tmp/pictext_bench/vitl14.pt")
    torch.save(ref.state_dict(), path)
    ours = load_clip(path, activation="quick_gelu")
    pixels = torch.randn(4, 3, 224, 224)
    systems = {"pictext": lambda: ours.encode_image(pixels), "open_clip": lambda: ref.encode_image(pixels)}
    with torch.inference_mode():
        for fn in systems.values():
            fn()
        best = {name: min(step._timed(fn) for _ in range(3)) for name, fn in systems.items()}
        cosine = F.cosine_similarity(systems["pictext"](), systems["open_clip"]()).min().item()
    return [{"system": name, "images_s": round(4 / t, 3), "min_cosine": round(cosine, 6)} for name, t in best.items()]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    rate = step.gemm_rate()
    start = time.perf_counter()
    vqgan = vqgan_clip_rows(rate)
    by = {(r["system"], r["size"]): r["seconds_per_step"] for r in vqgan}
    vit = vit_l_rows()
    images = {r["system"]: r["images_s"] for r in vit}
    summary = {
        "ratio_vs_reference": round(by[("reference fp32", 256)] / by[("pictext fp32", 256)], 3),
        **{
            f"ratio_vs_reference_{size}px": round(by[("reference fp32", size)] / by[("pictext fp32", size)], 3)
            for size in SIZES
            if size != 256
        },
        "minutes_300_steps_256px": round(300 * by[("pictext fp32", 256)] / 60, 1),
        "vit_l14_ratio_vs_open_clip": round(images["pictext"] / images["open_clip"], 3),
    }
    if "bf16" in PRECISIONS:  # the bf16 autocast step against the reference in fp32
        summary["bf16_ratio_vs_reference"] = round(by[("reference fp32", 256)] / by[("pictext bf16", 256)], 3)
    machine = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "native_bf16": cpu_has_fast_bf16(), "gemm_gflops": round(rate / 1e9),
               "bench_minutes": round((time.perf_counter() - start) / 60, 1)}  # fmt: skip
    out = {"summary": summary, "vqgan_clip": vqgan, "vit_l14": vit, "machine": machine}
    (Path(__file__).parent / "results" / "real_size.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
