"""Images/s and texts/s of pictext vs open_clip vs transformers, identical random ViT-B/32 weights, one run.

Writes bench/results/clip_encode.json. The reduced-precision path is bf16 autocast; on CPUs without
AVX512-BF16 or AMX it is emulated, and the JSON says so (`cpu_native_bf16`). A second row tries int8:
torch's dynamic quantization of pictext's Linear layers (fbgemm; the fused QKV projection stays fp32),
to show what an AVX2-only CPU can gain without native bf16.
"""

from __future__ import annotations

import copy
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


def rates(fns: dict, n_items: int) -> dict[str, float]:
    """Best of REPEATS per function, taken in turns (a, b, c, a, b, c, ...), so that a slow spell of a shared
    machine hits every system alike instead of whichever happened to run then."""
    for fn in fns.values():
        fn()  # warm-up
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(REPEATS):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: n_items / t for name, t in best.items()}


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
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated for torchao, still in torch 2.14
        warnings.simplefilter("ignore")
        int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(ours), {torch.nn.Linear}, dtype=torch.qint8)

    def bf16() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return ours.encode_image(pixels).float()

    fast = {"bf16-autocast": bf16, "int8-dynamic": lambda: int8.encode_image(pixels)}
    with torch.inference_mode():
        exact = ours.encode_image(pixels)
        cosines = {k: torch.nn.functional.cosine_similarity(exact, fn()).min().item() for k, fn in fast.items()}
        images_s = rates({name: img for name, (img, _) in systems.items()} | fast, BATCH)  # all in the same turns
        texts_s = rates({name: txt for name, (_, txt) in systems.items()}, BATCH)
    rows = [{"system": n, "precision": "fp32", "images_s": images_s[n], "texts_s": texts_s[n]} for n in systems]
    rows += [{"system": "pictext", "precision": k, "images_s": images_s[k], "min_cosine": cosines[k]} for k in fast]
    bf16_rate, int8_rate = images_s["bf16-autocast"], images_s["int8-dynamic"]
    peers = [images_s["open_clip"], images_s["transformers"]]
    open_clip_rate = images_s["open_clip"]
    result = {
        "summary": {
            "ratio_vs_fastest_peer": images_s["pictext"] / max(peers),
            "fast_ratio_vs_fastest_peer": bf16_rate / max(peers),
            "fast_ratio_vs_open_clip_fp32": bf16_rate / open_clip_rate,
            "fast_min_cosine": cosines["bf16-autocast"],
            "int8_ratio_vs_open_clip_fp32": int8_rate / open_clip_rate,
            "int8_min_cosine": cosines["int8-dynamic"],
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
