"""End-to-end indexing images/s: `pictext index` against a plain loop with open_clip's preprocess and model.

Both sides embed the same folder of generated JPEG photos (640x480) with the same architecture and the same
weights (a random-init open_clip model, loaded into pictext through its OpenCLIP converter), at the same batch
size. The plain loop is what a script (or rclip) does: for each batch, open, preprocess, encode, in one
process. pictext decodes and preprocesses in DataLoader workers while the main process encodes, decodes
JPEGs at reduced scale (`fast_decode`), hashes and records every file in the catalog. Rows for pictext with
exact decoding show what the pipeline alone gains; `min_cosine`/`mean_cosine` say how close pictext's vectors
are to the loop's. Two models: the size of pictext's default model (32 px ViT, where decoding dominates) and
ViT-B/32 at 224 px (where the encoder dominates on a CPU). Writes bench/results/index.json.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image, ImageDraw

from pictext.clip.io import load_clip
from pictext.clip.model import CLIPConfig, TextConfig, VisionConfig
from pictext.search import Index
from pictext.training import cpu_has_fast_bf16

BATCH = 64
SMALL = {  # the default shapes model's architecture (pictext.clip.recipe.CLIPRecipe)
    "embed_dim": 128,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 128, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 20, "vocab_size": 320, "width": 128, "heads": 4, "layers": 2},
}
SMALL_CONFIG = CLIPConfig(  # the same, for pictext: 4 heads of 32 cannot be inferred from the tensors
    embed_dim=128,
    vision=VisionConfig(image_size=32, layers=4, width=128, patch_size=8, head_width=32),
    text=TextConfig(context_length=20, vocab_size=320, width=128, heads=4, layers=2, eot_token_id=319),
    activation="gelu",
)
MODELS = {
    "default-size ViT (32 px)": ("ViT-B-32", SMALL, SMALL_CONFIG, 3000),
    "ViT-B/32 (224 px)": ("ViT-B-32", {}, None, 400),
}


def make_photos(folder: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        base = rng.integers(0, 255, size=(4, 3, 3)).astype(np.float32)
        image = Image.fromarray(base.astype(np.uint8)).resize((640, 480), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = rng.integers(0, 600), rng.integers(0, 440)
            r = int(rng.integers(10, 120))
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        image.save(folder / f"photo_{i:05d}.jpg", quality=90)


def plain_loop(model, preprocess, paths: list[Path]) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, len(paths), BATCH):
            pixels = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[start : start + BATCH]])
            features = model.encode_image(pixels)
            out.append(torch.nn.functional.normalize(features, dim=-1).numpy())
    return np.concatenate(out)


def run_model(label: str, name: str, overrides: dict, config: CLIPConfig | None, n: int, work: Path) -> list[dict]:
    photos = work / f"photos_{n}"
    if not photos.exists():
        make_photos(photos, n)
    paths = sorted(photos.iterdir())
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, _, preprocess = open_clip.create_model_and_transforms(name, **overrides)
    ref.eval()
    torch.save(ref.state_dict(), work / "weights.pt")
    ours = load_clip(work / "weights.pt", activation="gelu", config=config)

    start = time.perf_counter()
    reference = plain_loop(ref, preprocess, paths)
    loop_s = time.perf_counter() - start
    rows = [{"model": label, "system": "open_clip plain loop", "images": n, "images_per_s": round(n / loop_s, 1)}]
    systems = [("pictext index", True, "fp32"), ("pictext index, exact decode", False, "fp32")]
    if cpu_has_fast_bf16():  # emulated bf16 is slower than fp32; the row is for CPUs that multiply it natively
        systems.append(("pictext index --precision bf16", True, "bf16"))
    for system, fast, precision in systems:
        folder = work / f"index_{fast}_{precision}"
        shutil.rmtree(folder, ignore_errors=True)
        ours.precision = precision
        index = Index(folder, model=ours)
        start = time.perf_counter()
        report = index.add([photos], batch_size=BATCH, fast_decode=fast)
        seconds = time.perf_counter() - start
        assert report.embedded == n, report
        by_path = {r.path: r.row for r in index.catalog.records()}
        vectors = index.vectors.read([by_path[str(p)] for p in paths])
        cosine = np.sum(vectors * reference, axis=1)
        rows.append(
            {
                "model": label,
                "system": system,
                "images": n,
                "images_per_s": round(n / seconds, 1),
                "ratio_vs_open_clip_loop": round(loop_s / seconds, 2),
                "min_cosine": round(float(cosine.min()), 5),
                "mean_cosine": round(float(cosine.mean()), 5),
            }
        )
        index.close()
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    os.environ.setdefault("PICTEXT_QUIET", "1")
    only = sys.argv[1:]
    work = Path(tempfile.gettempdir()) / "pictext_bench_index"
    rows = []
    for label, (name, overrides, config, n) in MODELS.items():
        if not only or any(o in label for o in only):
            rows += run_model(label, name, overrides, config, n, work)
    main_row = next(r for r in rows if r["system"] == "pictext index")
    summary = {
        "model": main_row["model"],
        "ratio_vs_open_clip_loop": main_row["ratio_vs_open_clip_loop"],
        "target": 1.5,
        "target_met": main_row["ratio_vs_open_clip_loop"] >= 1.5,
    }
    for row in rows:
        if row["system"] == "pictext index --precision bf16":
            summary[f"bf16_ratio_vs_open_clip_loop ({row['model']})"] = row["ratio_vs_open_clip_loop"]
    out = {
        "machine": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "native_bf16": cpu_has_fast_bf16(),
        "batch": BATCH,
        "rows": rows,
        "summary": summary,
    }
    (Path(__file__).parent / "results" / "index.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
