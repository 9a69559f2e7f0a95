"""ruDALL-E sampling speed: image tokens per second, pictext's sampler on the imported model against ruDALL-E's own
`rudalle.pipelines.generate_images`, same weights, same top-k / top-p, in one run.

Two sizes, random weights (published ones cannot be downloaded here):
- "small": 4 layers of width 256, 8 heads, 32 text tokens, a 16x16 image grid (256 tokens), 1,024 codes;
- "malevich-depth": Malevich's 24 layers of width 2,048 and 16 heads, its 128 text tokens, its vocabularies
  (16,512 text ids, 8,192 codes), on an 8x8 image grid (64 tokens) instead of 32x32 so that one run of both
  systems fits the time a benchmark has on 2 cores. The per-token cost of ruDALL-E's cache grows with the
  stream (it concatenates every layer's keys, values and outputs each step), so at 1,024 tokens its ratio
  would be larger, not smaller.
Both draw 2 pictures in one batch with top_k 512 (small) or 2,048 (malevich-depth) and top_p 0.995 (ruDALL-E's
README settings), temperature 1. ruDALL-E's run includes what generate_images always does after the tokens:
one uncached pass over the whole stream for its perplexity ranking, and the VAE decode (a stub returning zeros
here, so no VAE time is counted). pictext's run is `sample` (KV cache, the tokens only). Tokens per second =
pictures x image tokens / seconds; the best of interleaved rounds. A bf16 row (the small size) where the CPU
has native bf16: pictext's weights in bfloat16, ruDALL-E under CPU autocast to bfloat16 (its attention
multiplies float32 masks into the scores, so its weights cannot simply be cast).

ruDALL-E 1.1.3 needs transformers' `top_k_top_p_filtering` (removed from transformers in 4.40): it is put back
for this run as transformers 4.10 wrote it (top-k, then top-p keeping the first token past the mass), and
huggingface_hub's `cached_download`, imported but never called here, is stubbed. Install ruDALL-E without its
pins: `pip install --no-deps rudalle==1.1.3 more-itertools einops` (`make bench` does).
Writes bench/results/rudalle_sample.json.
"""

from __future__ import annotations

import json
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from pictext.dalle.convert import from_rudalle
from pictext.dalle.sampling import SamplingConfig, sample
from pictext.training import cpu_has_fast_bf16

from helpers import reference_module

SIZES = {
    "small": dict(num_layers=4, hidden_size=256, num_attention_heads=8, text_seq_length=32, image_tokens_per_dim=16,
                  vocab_size=1000 + 32, image_vocab_size=1024),
    "malevich-depth": dict(num_layers=24, hidden_size=2048, num_attention_heads=16, text_seq_length=128,
                           image_tokens_per_dim=8, vocab_size=16384 + 128, image_vocab_size=8192),
}  # fmt: skip
TOP_K = {"small": 512, "malevich-depth": 2048}
TOP_P, PICTURES = 0.995, 2
ROUNDS = {"small": 3, "malevich-depth": 1}


def top_k_top_p_filtering(logits, top_k=0, top_p=1.0, filter_value=-float("inf"), min_tokens_to_keep=1):
    """transformers 4.10's function, which ruDALL-E calls: keep the top k, then the smallest set of the most
    likely whose mass passes top_p (the token that passes it kept)."""
    if top_k > 0:
        top_k = min(max(top_k, min_tokens_to_keep), logits.size(-1))
        logits = logits.masked_fill(logits < torch.topk(logits, top_k)[0][..., -1, None], filter_value)
    if top_p < 1.0:
        sorted_logits, sorted_indices = torch.sort(logits, descending=True)
        cumulative = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
        remove = cumulative > top_p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = 0
        logits = logits.masked_fill(remove.scatter(1, sorted_indices, remove), filter_value)
    return logits


def rudalle_modules():
    import huggingface_hub
    import transformers

    transformers.top_k_top_p_filtering = top_k_top_p_filtering
    huggingface_hub.cached_download = None  # imported by rudalle.tokenizer's module, never called here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return reference_module("rudalle.dalle.model"), reference_module("rudalle.pipelines")


class Tokenizer:
    """What generate_images asks of its tokenizer: a caption's ids laid out as ruDALL-E lays them out."""

    def encode_text(self, text: str, text_seq_length: int) -> torch.Tensor:
        ids = torch.zeros(text_seq_length, dtype=torch.long)
        ids[:6] = torch.tensor([2, 40, 41, 42, 43, 3])  # BOS, four words, EOS
        return ids


class StubVAE:
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.zeros(codes.shape[0], 3, 8, 8)


def run(size: str, dtype: torch.dtype) -> dict:
    model_module, pipelines = rudalle_modules()
    params = SIZES[size]
    torch.manual_seed(0)
    reference = model_module.DalleModel(device="cpu", embedding_dropout_prob=0.0, attention_dropout_prob=0.0,
                                        output_dropout_prob=0.0, cogview_sandwich_layernorm=True,
                                        cogview_pb_relax=True, **params).eval()  # fmt: skip
    ours = from_rudalle(reference.state_dict(), cogview_sandwich_layernorm=True, cogview_pb_relax=True, **params)
    ours = ours.to(dtype)  # ruDALL-E keeps float32 weights and runs under autocast (its matmuls mix dtypes)
    text = Tokenizer().encode_text("", params["text_seq_length"])[None].expand(PICTURES, -1)
    tokens = PICTURES * params["image_tokens_per_dim"] ** 2
    cfg = SamplingConfig(top_k=TOP_K[size], top_p=TOP_P)
    times = {"pictext": [], "rudalle": []}
    for _ in range(ROUNDS[size]):
        start = time.perf_counter()
        with torch.no_grad():
            sample(ours, text, cfg, torch.Generator().manual_seed(0))
        times["pictext"].append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            pipelines.generate_images("", Tokenizer(), reference, StubVAE(), top_k=TOP_K[size], top_p=TOP_P,
                                      images_num=PICTURES, bs=PICTURES, seed=0)  # fmt: skip
        times["rudalle"].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    row = {"size": size, "dtype": str(dtype).removeprefix("torch."), "image_tokens": tokens,
           "parameters_m": round(sum(p.numel() for p in ours.parameters()) / 1e6, 1),
           "pictext_tokens_per_s": round(tokens / best["pictext"], 2),
           "rudalle_tokens_per_s": round(tokens / best["rudalle"], 2),
           "ratio_vs_rudalle": round(best["rudalle"] / best["pictext"], 2),
           "seconds": {k: [round(t, 2) for t in v] for k, v in times.items()}}  # fmt: skip
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    torch.set_num_threads(torch.get_num_threads())
    rows = [run("small", torch.float32), run("malevich-depth", torch.float32)]
    if cpu_has_fast_bf16():
        rows.append(run("small", torch.bfloat16))
    fp32 = [r for r in rows if r["dtype"] == "float32"]
    result = {
        "benchmark": "rudalle_sample",
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        },  # fmt: skip
        "rows": rows,
        "summary": {
            "ratio_vs_rudalle": min(r["ratio_vs_rudalle"] for r in fp32),
            "ratio_vs_rudalle_by_size": {r["size"]: r["ratio_vs_rudalle"] for r in fp32},
        },  # fmt: skip
    }
    out = Path(__file__).parent / "results" / "rudalle_sample.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"]))


if __name__ == "__main__":
    main()
