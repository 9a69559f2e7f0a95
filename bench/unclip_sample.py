"""Seconds per image of unCLIP sampling: pictext against dalle2-pytorch, same sizes and steps, random weights.

Both sides get the default unCLIP recipe's sizes in the `default` CLIP's space (128-d embeddings, 32 text
positions): a prior transformer of width 256, 4 layers, 4 heads over the caption's token encodings, its
embedding, the timestep, the noised image embedding and a query (dalle2-pytorch's DiffusionPriorNetwork works at
its embedding width, so its embeddings are 256 wide), 64 DDIM steps, the better of two draws kept; and a 32 px
decoder UNet of widths 32/64/64, one resnet block a level, 4 image-embedding tokens, 50 DDIM steps, guidance 3.
The CLIP text tower is not timed (the same precomputed encodings go to both). dalle2-pytorch 1.15.6 runs
guidance as two forward passes; pictext batches the conditional and unconditional halves in one. pictext's
prior computes the caption's positions once (`condition_cache`: the mask is causal and they come first), so
each step runs 3 of its 36 positions; dalle2-pytorch runs all of them at every step.
Writes bench/results/unclip_sample.json.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from pictext.unclip.decoder import DecoderConfig, DiffusionDecoder
from pictext.unclip.prior import DiffusionPrior, PriorConfig, TextCondition

E, T, WIDTH, LAYERS, HEADS = 128, 32, 256, 4, 4  # the default CLIP's embedding and context; the recipe's prior
CHANNELS, RESOLUTION, PRIOR_STEPS, DECODER_STEPS, GUIDANCE, BATCH = (32, 64, 64), 32, 64, 50, 3.0, 8


def best(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def pictext_side() -> dict[str, float]:
    torch.manual_seed(0)
    prior = DiffusionPrior(PriorConfig(embed_dim=E, text_len=T, width=WIDTH, heads=HEADS, layers=LAYERS)).eval()
    decoder = DiffusionDecoder(DecoderConfig(embed_dim=E, resolution=RESOLUTION, channels=CHANNELS)).eval()
    cond = TextCondition(torch.nn.functional.normalize(torch.randn(BATCH, E), dim=-1), torch.randn(BATCH, T, E),
                         torch.ones(BATCH, T, dtype=torch.bool))  # fmt: skip
    embedding = torch.nn.functional.normalize(torch.randn(BATCH, E), dim=-1)
    with torch.no_grad():
        prior_s = best(lambda: prior.generate(cond, 1.0, PRIOR_STEPS, generator=torch.Generator().manual_seed(0)))
        decoder_s = best(lambda: decoder.generate(embedding, GUIDANCE, DECODER_STEPS, torch.Generator().manual_seed(0)))
    return {"prior_s": prior_s, "decoder_s": decoder_s, "params_prior": sum(p.numel() for p in prior.parameters()),
            "params_decoder": sum(p.numel() for p in decoder.parameters())}  # fmt: skip


def dalle2_side() -> dict[str, float]:
    from dalle2_pytorch import Decoder, DiffusionPriorNetwork, Unet
    from dalle2_pytorch import DiffusionPrior as Prior

    torch.manual_seed(0)
    net = DiffusionPriorNetwork(dim=WIDTH, depth=LAYERS, heads=HEADS, dim_head=WIDTH // HEADS, max_text_len=T)
    prior = Prior(net, image_embed_dim=WIDTH, timesteps=1000, sample_timesteps=PRIOR_STEPS,
                  condition_on_text_encodings=True).eval()  # fmt: skip
    unet = Unet(dim=CHANNELS[0], image_embed_dim=E, cond_dim=64, num_image_tokens=4, dim_mults=(1, 2, 2),
                num_resnet_blocks=1, attn_dim_head=32, attn_heads=2, channels=3)  # fmt: skip
    decoder = Decoder(unet, image_size=RESOLUTION, timesteps=1000, sample_timesteps=DECODER_STEPS,
                      learned_variance=False).eval()  # fmt: skip
    text_cond = {"text_embed": torch.randn(2 * BATCH, WIDTH), "text_encodings": torch.randn(2 * BATCH, T, WIDTH)}
    embedding = torch.nn.functional.normalize(torch.randn(BATCH, E), dim=-1)

    def sample_prior() -> torch.Tensor:  # DiffusionPrior.sample without its CLIP call: two draws, keep the closer
        x = prior.p_sample_loop((2 * BATCH, WIDTH), text_cond=text_cond, cond_scale=1.0, timesteps=PRIOR_STEPS)
        x, t = x.view(BATCH, 2, WIDTH), text_cond["text_embed"].view(BATCH, 2, WIDTH)
        return x[torch.arange(BATCH), torch.nn.functional.cosine_similarity(x, t, dim=-1).argmax(1)]

    with torch.no_grad():
        prior_s = best(sample_prior)
        decoder_s = best(lambda: decoder.sample(image_embed=embedding, cond_scale=GUIDANCE))
    return {"prior_s": prior_s, "decoder_s": decoder_s, "params_prior": sum(p.numel() for p in net.parameters()),
            "params_decoder": sum(p.numel() for p in unet.parameters())}  # fmt: skip


def main() -> None:
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")  # dalle2-pytorch draws a bar per sampling loop
    torch.set_num_threads(torch.get_num_threads())
    ours, theirs = pictext_side(), dalle2_side()
    per_image = {
        name: (side["prior_s"] + side["decoder_s"]) / BATCH
        for name, side in (("pictext", ours), ("dalle2_pytorch", theirs))
    }
    summary = {
        "ratio_vs_dalle2_pytorch": per_image["dalle2_pytorch"] / per_image["pictext"],
        "prior_ratio": theirs["prior_s"] / ours["prior_s"],
        "decoder_ratio": theirs["decoder_s"] / ours["decoder_s"],
        "pictext_s_per_image": per_image["pictext"],
        "dalle2_pytorch_s_per_image": per_image["dalle2_pytorch"],
    }
    out = {
        "summary": summary,
        "pictext": ours,
        "dalle2_pytorch": theirs,
        "settings": {"batch": BATCH, "prior_steps": PRIOR_STEPS, "decoder_steps": DECODER_STEPS,
                     "guidance": GUIDANCE, "resolution": RESOLUTION, "channels": CHANNELS, "precision": "fp32"},
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
    }  # fmt: skip
    path = Path(__file__).parent / "results" / "unclip_sample.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
