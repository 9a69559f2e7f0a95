"""Training samples/s and peak memory: pictext's CLIP training step against open_clip's, same model and batch.

Both sides start from the same random weights (an open_clip model loaded into pictext by its converter),
train on the same batch of shapes-world images and captions, with AdamW at the same settings, fp32 on the
CPU. open_clip's step is the one `open_clip_train` runs: `model(images, texts)` then `open_clip.loss.ClipLoss`,
backward, optimizer step. pictext's step is `train_clip`'s: encode, `clip_loss`, backward, step. Each system
runs in its own process (so peak RSS is its own), twice, alternating; the best run counts.
Writes bench/results/clip_train.json.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import resource
import time
import warnings
from pathlib import Path

import torch

BATCH, STEPS, WARMUP = 128, 8, 2
CONFIG = {  # the default shapes model's size, with OpenAI's head width (64) so both libraries agree
    "embed_dim": 128,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 128, "patch_size": 8},
    "text_cfg": {"context_length": 20, "vocab_size": 320, "width": 128, "heads": 2, "layers": 2},
}


def _batch():
    from pictext.data.shapes import ShapesWorld
    from pictext.images.transforms import Preprocess

    world = ShapesWorld(size=64, max_shapes=2, length=BATCH)
    pixels = Preprocess(image_size=32).batch([world[i][0] for i in range(BATCH)])
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 319, (BATCH, 20), generator=g)
    tokens[:, -1] = 319  # EOT last, the largest id, where both libraries pool
    return pixels, tokens


def _run(system: str, queue: mp.Queue) -> None:
    import open_clip

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = open_clip.create_model("ViT-B-32", **CONFIG)
    pixels, tokens = _batch()
    if system == "open_clip":
        model, loss_fn = ref.train(), open_clip.loss.ClipLoss()
        model.output_dict = True

        def step() -> torch.Tensor:
            out = model(pixels, tokens)
            return loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
    else:
        from pictext.clip.io import load_clip
        from pictext.clip.loss import clip_loss

        path = Path(f"/tmp/pictext_bench_train_{os.getpid()}.pt")
        torch.save(ref.state_dict(), path)
        model = load_clip(path, activation="gelu").train()
        path.unlink()

        def step() -> torch.Tensor:
            image = model.encode_image(pixels, normalize=True)
            return clip_loss(image, model.encode_text(tokens, normalize=True), model.logit_scale)

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1)
    losses = []
    for i in range(WARMUP + STEPS):
        if i == WARMUP:
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = step()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"system": system, "samples_per_s": BATCH * STEPS / seconds, "peak_rss_mb": peak_mb, "losses": losses})


def main() -> None:
    ctx = mp.get_context("spawn")
    best: dict[str, dict] = {}
    for _ in range(2):
        for system in ("pictext", "open_clip"):
            queue = ctx.Queue()
            proc = ctx.Process(target=_run, args=(system, queue))
            proc.start()
            result = queue.get(timeout=600)
            proc.join()
            print(json.dumps({k: v for k, v in result.items() if k != "losses"}), flush=True)
            if system not in best or result["samples_per_s"] > best[system]["samples_per_s"]:
                best[system] = result
    same = max(abs(a - b) for a, b in zip(best["pictext"]["losses"], best["open_clip"]["losses"]))
    rows = [
        {"system": s, "samples_per_s": round(r["samples_per_s"], 1), "peak_rss_mb": round(r["peak_rss_mb"])}
        for s, r in best.items()
    ]
    summary = {
        "ratio_vs_open_clip": round(best["pictext"]["samples_per_s"] / best["open_clip"]["samples_per_s"], 3),
        "target": 1.0,
        "max_loss_difference": same,  # the two trajectories are the same computation
    }
    out = {"machine": platform.processor() or platform.machine(), "batch": BATCH, "config": CONFIG}
    out |= {"rows": rows, "summary": summary}
    (Path(__file__).parent / "results" / "clip_train.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
