"""The shapes oracle's own accuracy: the ceiling any generator judged by it can reach.

Real shapes-world images (one shape each; every colour, shape, size and position, with the world's jitter and
background greys) at 32 and 64 px, clean and corrupted by Gaussian noise, Gaussian blur and JPEG compression.
For each image the oracle judges the true prompt (a right verdict is a pass) and one wrong prompt (another
colour or another shape, equally often; a right verdict is a fail), with both verdicts:

- `contains`: some region of the colour has the shape (`find_shapes`);
- `dominant`: the largest named-colour region is the colour and the shape (`judge(...).dominant`).

Writes bench/results/oracle.json. No peers: the oracle is pictext's own judge, so this measures it alone.
"""

from __future__ import annotations

import io
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from pictext.data.shapes import COLORS, SHAPES, ShapesWorld, judge

N_IMAGES = int(os.environ.get("ORACLE_IMAGES", 400))
CORRUPTIONS = [
    ("clean", None),
    ("noise sigma 8", ("noise", 8)),
    ("noise sigma 16", ("noise", 16)),
    ("noise sigma 32", ("noise", 32)),
    ("blur radius 0.5", ("blur", 0.5)),
    ("blur radius 1", ("blur", 1.0)),
    ("blur radius 2", ("blur", 2.0)),
    ("jpeg quality 75", ("jpeg", 75)),
    ("jpeg quality 30", ("jpeg", 30)),
    ("jpeg quality 10", ("jpeg", 10)),
]


def corrupt(image: Image.Image, how: tuple | None, rng: np.random.Generator) -> Image.Image:
    if how is None:
        return image
    kind, strength = how
    if kind == "noise":
        noisy = np.asarray(image, np.float32) + rng.normal(0, strength, (image.height, image.width, 3))
        return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    if kind == "blur":
        return image.filter(ImageFilter.GaussianBlur(strength))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=strength)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def wrong_prompt(color: str, shape: str, rng: np.random.Generator) -> tuple[str, str]:
    if rng.random() < 0.5:
        return str(rng.choice([c for c in COLORS if c != color])), shape
    return color, str(rng.choice([s for s in SHAPES if s != shape]))


def measure(size: int, how: tuple | None) -> dict[str, float]:
    world = ShapesWorld(size=size, split="all", max_shapes=1, seed=11, length=N_IMAGES)
    rng = np.random.default_rng([size, len(str(how))])
    right = {"contains": 0, "dominant": 0}
    false_pass = {"contains": 0, "dominant": 0}
    for i in range(N_IMAGES):
        image = corrupt(world[i][0], how, rng)
        color, shape = world.label(i).split()
        true, false = judge(image, color, shape), judge(image, *wrong_prompt(color, shape, rng))
        for verdict in right:
            right[verdict] += getattr(true, verdict)
            false_pass[verdict] += getattr(false, verdict)
    return {
        "contains_accuracy": right["contains"] / N_IMAGES,
        "dominant_accuracy": right["dominant"] / N_IMAGES,
        "contains_false_pass": false_pass["contains"] / N_IMAGES,
        "dominant_false_pass": false_pass["dominant"] / N_IMAGES,
    }


def main() -> None:
    rows = []
    began = time.perf_counter()
    for size in (32, 64):
        for name, how in CORRUPTIONS:
            row = {"system": "pictext oracle", "size": size, "corruption": name, "images": N_IMAGES}
            row |= measure(size, how)
            rows.append(row)
            print(
                f"{size:3d} px  {name:16s}  contains {row['contains_accuracy']:6.1%}  "
                f"dominant {row['dominant_accuracy']:6.1%}  false passes {row['contains_false_pass']:5.1%} / "
                f"{row['dominant_false_pass']:5.1%}",
                flush=True,
            )
    clean = {r["size"]: r for r in rows if r["corruption"] == "clean"}
    summary = {
        "dominant_accuracy_clean_64px": clean[64]["dominant_accuracy"],
        "dominant_accuracy_clean_32px": clean[32]["dominant_accuracy"],
        "contains_accuracy_clean_64px": clean[64]["contains_accuracy"],
        "contains_accuracy_clean_32px": clean[32]["contains_accuracy"],
        "worst_dominant_accuracy": min(r["dominant_accuracy"] for r in rows),
        "worst_false_pass": max(max(r["contains_false_pass"], r["dominant_false_pass"]) for r in rows),
    }
    machine = {"cpu": platform.processor() or platform.machine(), "threads": os.cpu_count()}
    out = {"summary": summary, "rows": rows, "machine": machine, "seconds": round(time.perf_counter() - began, 1)}
    path = Path(__file__).parent / "results" / "oracle.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
