"""Images/s and texts/s of pictext vs open_clip vs transformers, identical random ViT-B/32 weights, one run.

Writes bench/results/clip_encode.json. The reduced-precision path is bf16 autocast; on CPUs without
AVX512-BF16 or AMX it is emulated, and the JSON says so (`cpu_native_bf16`).
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from pathlib import Path

import open_clip
import torch
from transformers import CLIPModel

from pictext.clip.convert import export_hf
from pictext.clip.io import load_clip
from pictext.training import cpu_has_fast_bf16

BATCH, REPEATS = 16, 5


def rate(fn, n_items: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n_items / best


def main() -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = open_clip.create_model("ViT-B-32-quickgelu").eval()
    tmp = Path("/tmp/pictext_bench")
    tmp.mkdir(exist_ok=True)
    torch.save(ref.state_dict(), tmp / "vitb32.pt")
    ours = load_clip(tmp / "vitb32.pt", activation="quick_gelu")
    export_hf(ours, tmp / "hf")
    hf = CLIPModel.from_pretrained(tmp / "hf").eval()
    pixels = torch.randn(BATCH, 3, 224, 224)
    tokens = open_clip.tokenize(["a photo of a dog playing in the park"] * BATCH)
    systems = {
        "pictext": (lambda: ours.encode_image(pixels), lambda: ours.encode_text(tokens)),
        "open_clip": (lambda: ref.encode_image(pixels), lambda: ref.encode_text(tokens)),
        "transformers": (
            lambda: hf.get_image_features(pixel_values=pixels),
            lambda: hf.get_text_features(input_ids=tokens),
        ),
    }
    rows = []
    with torch.inference_mode():
        for name, (img, txt) in systems.items():
            rows.append(
                {"system": name, "precision": "fp32", "images_s": rate(img, BATCH), "texts_s": rate(txt, BATCH)}
            )
        exact = ours.encode_image(pixels)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = ours.encode_image(pixels).float()
            bf16_rate = rate(lambda: ours.encode_image(pixels), BATCH)
    cosine = torch.nn.functional.cosine_similarity(exact, fast).min().item()
    rows.append({"system": "pictext", "precision": "bf16-autocast", "images_s": bf16_rate, "min_cosine": cosine})
    peers = [r["images_s"] for r in rows if r["system"] != "pictext"]
    open_clip_rate = next(r["images_s"] for r in rows if r["system"] == "open_clip")
    result = {
        "summary": {
            "ratio_vs_fastest_peer": rows[0]["images_s"] / max(peers),
            "fast_ratio_vs_fastest_peer": bf16_rate / max(peers),
            "fast_ratio_vs_open_clip_fp32": bf16_rate / open_clip_rate,
            "fast_min_cosine": cosine,
        },
        "rows": rows,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cpu_native_bf16": cpu_has_fast_bf16(),
            "batch": BATCH,
        },
    }
    out = Path(__file__).parent / "results" / "clip_encode.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
