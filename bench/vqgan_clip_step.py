"""Seconds per VQGAN+CLIP iteration at 64, 128 and 256 px, pictext against the same step built from the
reference libraries, split into decode, cutouts, CLIP forward and backward, next to a FLOP floor.

Both sides use identical random weights: the default VQGAN's architecture (pictext; the reference decodes
with taming-transformers' `Decoder`, loaded with the same tensors) and OpenAI's ViT-B/32 (pictext's CLIP
loaded from open_clip's state dict; the reference encodes with open_clip). 16 cutouts of 224 px per step.
The reference's cutouts follow nerdyrodent/VQGAN-CLIP's `MakeCutouts`: a Python loop of random square crops
(size drawn with `cut_pow`), each resampled to 224 px, then kornia's flip, sharpness, affine, perspective and
colour jitter; its resampling is lanczos in the original, bicubic with antialiasing here (torch has no
lanczos). The FLOP floor is the step's FLOP count (torch's FlopCounterMode over pictext's whole step, forward
and backward) divided by the fp32 matrix-multiply rate this CPU reaches on a large GEMM.

Writes bench/results/vqgan_clip_step.json (summary key `ratio_vs_reference`, fp32 at 64 px; target >= 1.2).
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from pictext.clip.io import load_clip
from pictext.generate.vqgan_clip import VQGANCLIPSettings, _normalize, clamp_with_grad, make_cutouts, spherical_loss
from pictext.training import cpu_has_fast_bf16
from pictext.vqgan.model import VQGAN
from pictext.vqgan.recipe import DEFAULT_VQGAN

CUTOUTS, CUT_SIZE, REPEATS = 16, 224, int(os.environ.get("STEP_REPEATS", 3))
SIZES = tuple(int(s) for s in os.environ.get("STEP_SIZES", "64,128,256").split(","))


def reference_cutouts(picture: torch.Tensor, augment: torch.nn.Module, cut_pow: float = 1.0) -> torch.Tensor:
    _, _, h, w = picture.shape
    side = min(h, w)
    min_size = min(side, CUT_SIZE)
    cuts = []
    for _ in range(CUTOUTS):
        size = int(torch.rand([]) ** cut_pow * (side - min_size) + min_size)
        x0 = torch.randint(0, w - size + 1, ())
        y0 = torch.randint(0, h - size + 1, ())
        cut = picture[:, :, y0 : y0 + size, x0 : x0 + size]
        cuts.append(F.interpolate(cut, size=(CUT_SIZE, CUT_SIZE), mode="bicubic", antialias=True, align_corners=False))
    batch = augment(torch.cat(cuts))
    noise = torch.rand(CUTOUTS, 1, 1, 1) * 0.1
    return batch + noise * torch.randn_like(batch)


class Timer:
    def __init__(self) -> None:
        self.parts: dict[str, float] = {}
        self.last = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.parts[name] = self.parts.get(name, 0.0) + now - self.last
        self.last = now


def pictext_step(vqgan, clip, z, target, g, precision: str, timer: Timer) -> None:
    config = VQGANCLIPSettings(cutouts=CUTOUTS)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        codes = vqgan.quantize.nearest(flat.detach().float())
        z_q = vqgan.codebook[codes].view(1, z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
        picture = clamp_with_grad((vqgan.decode(z + (z_q - z).detach()).float() + 1) / 2, 0.0, 1.0)
        timer.mark("decode")
        cuts = make_cutouts(picture, CUT_SIZE, config, g)
        timer.mark("cutouts")
        emb = clip.encode_image(_normalize(cuts, clip), normalize=True).float()
        loss = spherical_loss(emb, target, torch.ones(1))
        timer.mark("clip_forward")
    loss.backward()
    timer.mark("backward")


def reference_step(post_quant_conv, decoder, codebook, ref_clip, augment, z, target, timer: Timer) -> None:
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    d = flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * flat @ codebook.t()
    z_q = codebook[d.argmin(1)].view(1, z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
    picture = clamp_with_grad((decoder(post_quant_conv(z + (z_q - z).detach())) + 1) / 2, 0.0, 1.0)
    timer.mark("decode")
    cuts = reference_cutouts(picture, augment)
    timer.mark("cutouts")
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)
    emb = F.normalize(ref_clip.encode_image((cuts - mean) / std), dim=-1)
    loss = (emb - target).norm(dim=-1).div(2).arcsin().pow(2).mul(2).mean()
    timer.mark("clip_forward")
    loss.backward()
    timer.mark("backward")


def gemm_rate() -> float:
    """fp32 FLOP/s of a 2048^3 matrix multiply, best of 5: the rate the floor assumes."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(5))
    return 2 * 2048**3 / best


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_flops(vqgan, clip, z, target) -> int:
    """FLOPs of one pictext step, the backward pass included (it runs inside the counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    g = torch.Generator().manual_seed(0)
    with FlopCounterMode(display=False) as counter:
        pictext_step(vqgan, clip, z, target, g, "fp32", Timer())
    return counter.get_total_flops()


def taming_decoder(vqgan: VQGAN) -> torch.nn.Module:
    """taming's Decoder with `vqgan`'s decoder weights (the parameter names are the same)."""
    import contextlib

    from taming.modules.diffusionmodules.model import Decoder

    c = vqgan.config
    dd = dict(
        ch=c.ch,
        out_ch=3,
        ch_mult=list(c.ch_mult),
        num_res_blocks=c.num_res_blocks,
        in_channels=3,
        attn_resolutions=list(c.attn_resolutions),
        resolution=c.resolution,
        z_channels=c.z_channels,
    )
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # taming prints the latent shape
        decoder = Decoder(**dd).eval().requires_grad_(False)
    prefix = "decoder."
    decoder.load_state_dict({k[len(prefix) :]: v for k, v in vqgan.state_dict().items() if k.startswith(prefix)})
    return decoder


def measure_size(size, clip, ref_clip, augment, target, precisions, rate, vqgan_config=DEFAULT_VQGAN) -> list[dict]:
    """Best of REPEATS per system at `size`, taken in turns so a slow spell of the machine hits all alike."""
    vqgan = VQGAN(vqgan_config).eval().requires_grad_(False)
    decoder = taming_decoder(vqgan)
    side = size // vqgan.config.factor
    z0 = vqgan.quantize.lookup(torch.randint(0, vqgan.config.n_embed, (1, side, side)))
    floor = step_flops(vqgan, clip, z0.clone().requires_grad_(True), target) / rate
    generators = {p: torch.Generator().manual_seed(0) for p in precisions}
    systems = {
        **{f"pictext {p}": (lambda t, p=p: pictext_step(vqgan, clip, z0.clone().requires_grad_(True), target,
                                                         generators[p], p, t)) for p in precisions},
        "reference fp32": lambda t: reference_step(vqgan.post_quant_conv, decoder, vqgan.codebook, ref_clip, augment,
                                                   z0.clone().requires_grad_(True), target, t),
    }  # fmt: skip
    for fn in systems.values():
        fn(Timer())  # warm-up
    best: dict[str, Timer] = {}
    for _ in range(REPEATS):
        for name, fn in systems.items():
            timer = Timer()
            fn(timer)
            if name not in best or sum(timer.parts.values()) < sum(best[name].parts.values()):
                best[name] = timer
    rows = []
    for name, timer in best.items():
        row = {"system": name, "size": size, "seconds_per_step": round(sum(timer.parts.values()), 3),
               **{f"{k}_s": round(v, 3) for k, v in timer.parts.items()}, "flop_floor_s": round(floor, 3)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def setup() -> tuple:
    """(pictext's CLIP, open_clip's with the same random weights, the reference's augmentations, a target)."""
    import kornia.augmentation as K
    import open_clip

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_clip = open_clip.create_model("ViT-B-32-quickgelu").eval().requires_grad_(False)
    tmp = Path("/tmp/pictext_bench")
    tmp.mkdir(exist_ok=True)
    torch.save(ref_clip.state_dict(), tmp / "vitb32.pt")
    clip = load_clip(tmp / "vitb32.pt", activation="quick_gelu").requires_grad_(False)
    target = F.normalize(torch.randn(1, 512), dim=-1)
    augment = torch.nn.Sequential(
        K.RandomHorizontalFlip(p=0.5),
        K.RandomSharpness(0.3, p=0.4),
        K.RandomAffine(degrees=30, translate=(0.1, 0.1), p=0.8, padding_mode="border"),
        K.RandomPerspective(0.2, p=0.4),
        K.ColorJitter(hue=0.01, saturation=0.01, p=0.7),
    )
    return clip, ref_clip, augment, target


def main() -> None:
    clip, ref_clip, augment, target = setup()
    rate = gemm_rate()
    precisions = ["fp32"] + (["bf16"] if cpu_has_fast_bf16() else [])
    rows = [row for size in SIZES for row in measure_size(size, clip, ref_clip, augment, target, precisions, rate)]
    by = {(r["system"], r["size"]): r["seconds_per_step"] for r in rows}
    summary = {
        "ratio_vs_reference": round(by[("reference fp32", 64)] / by[("pictext fp32", 64)], 3),
        **{f"ratio_vs_reference_{s}px": round(by[("reference fp32", s)] / by[("pictext fp32", s)], 3) for s in SIZES},
    }
    if "bf16" in precisions:
        summary["bf16_ratio_vs_reference"] = round(by[("reference fp32", 64)] / by[("pictext bf16", 64)], 3)
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "native_bf16": cpu_has_fast_bf16(),
        "gemm_gflops": round(rate / 1e9),
    }
    out = {"summary": summary, "rows": rows, "machine": machine}
    (Path(__file__).parent / "results" / "vqgan_clip_step.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
