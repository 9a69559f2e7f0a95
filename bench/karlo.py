"""Karlo at its published size, random weights (the files cannot be downloaded here): pictext against diffusers.

Both run the very same networks, built once from the registry's configs (`kakaobrain/karlo-v1-alpha`,
3,422 M parameters, about 13.7 GB in float32): diffusers' `UnCLIPPipeline` and pictext's `KarloPipeline`
(its CLIP imported from the same text encoder). Measured per step and stage, each system in its own way of
calling them, taken in turns (best of REPEATS):

- prior: diffusers runs the PriorTransformer over all 81 tokens at every step; pictext computes the caption's
  78 once per picture (`prior_prefix`, counted once in the whole picture) and runs the step's 3;
- decoder: the 64 px UNet2DConditionModel on the guided batch of 2 (pictext's in channels-last layout: the
  networks are shared, so their layout is switched before each system's turn, outside the timing);
- super-resolution: the 256 px UNet2DModel (the same network class for its first 6 and its last step);
  pictext runs its first step (t=999) in the usual layout, the others in channels-last, and switches
  super_res_first's layout there and back once per picture (`super_res_switch`, both ways).

The whole picture at the default steps (25 prior, 25 decoder, 7 super-resolution) is composed from them:
an estimate, not a run (a run is about as long as the estimate and says nothing more). float32, 2 threads.
Writes bench/results/karlo.json (summary key `ratio_vs_diffusers`).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import tempfile
import time
import warnings
from pathlib import Path

import torch

from pictext import published
from pictext.training import cpu_has_fast_bf16
from pictext.unclip.karlo import _MODELS, KarloPipeline, _diffusers_class, karlo_clip

REPEATS = int(os.environ.get("KARLO_REPEATS", 2))
STEPS = {"prior": 25, "decoder": 25, "super_res": 7}


def build() -> tuple:
    """(diffusers' UnCLIPPipeline, pictext's KarloPipeline) sharing one set of random networks."""
    import diffusers
    import transformers
    from diffusers import UnCLIPPipeline

    from pictext.text.tokenizer import EOT, HF_EOT, HF_SOT, SOT, ClipBPETokenizer

    ref = published.entry("kakaobrain/karlo-v1-alpha").reference
    torch.manual_seed(0)
    parts = {name: _diffusers_class(_MODELS[name])(**config).eval() for name, config in ref["diffusers"].items()}
    schedulers = {name: diffusers.UnCLIPScheduler(**config) for name, config in ref["schedulers"].items()}
    text_encoder = transformers.CLIPTextModelWithProjection(transformers.CLIPTextConfig(**ref["text_encoder"])).eval()
    folder = Path(tempfile.mkdtemp()) / "karlo"  # the text encoder and tokenizer as the folder holds them
    text_encoder.save_pretrained(folder / "text_encoder")
    bpe = ClipBPETokenizer()  # OpenAI's vocabulary (open_clip's copy), written in Hugging Face's two files
    names = {SOT: HF_SOT, EOT: HF_EOT}
    (folder / "tokenizer").mkdir()
    vocab = {names.get(t, t): i for t, i in bpe.encoder.items()}
    (folder / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)
    (folder / "tokenizer" / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges))
    files = [str(folder / "tokenizer" / name) for name in ("vocab.json", "merges.txt")]
    tokenizer = transformers.CLIPTokenizer(*files, pad_token="!", model_max_length=77)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = UnCLIPPipeline(text_encoder=text_encoder, tokenizer=tokenizer, **parts, **schedulers)
    theirs.set_progress_bar_config(disable=True)
    ours = KarloPipeline(clip=karlo_clip(folder), **parts, **schedulers)
    return theirs, ours


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@torch.no_grad()
def measure(theirs, ours: KarloPipeline) -> dict[str, dict[str, float]]:
    prompt = "a closeup watercolor portrait of young male teacher of literature with a book"
    cond = ours._condition([prompt], guided=True)
    embeds, hidden, mask = theirs._encode_prompt([prompt], "cpu", 1, True)
    latents = torch.randn(2, 768)
    t = torch.tensor(500)
    from pictext.unclip.prior import condition_cache, forward_cached

    cache = condition_cache(ours.prior, cond.hidden, cond.embeds, cond.mask)
    image = torch.randn(1, 768)
    context, added = theirs.text_proj(image_embeddings=image, prompt_embeds=embeds, text_encoder_hidden_states=hidden,
                                      do_classifier_free_guidance=True)  # fmt: skip
    context_mask = torch.nn.functional.pad(mask, (4, 0), value=True)
    x64 = torch.randn(2, 3, 64, 64)
    x256 = torch.randn(1, 6, 256, 256)
    work = {
        ("text", "diffusers"): lambda: theirs._encode_prompt([prompt], "cpu", 1, True),
        ("text", "pictext"): lambda: ours._condition([prompt], guided=True),
        ("prior_prefix", "pictext"): lambda: condition_cache(ours.prior, cond.hidden, cond.embeds, cond.mask),
        ("prior", "diffusers"): lambda: theirs.prior(latents, timestep=t, proj_embedding=embeds,
                                                     encoder_hidden_states=hidden, attention_mask=mask),
        ("prior", "pictext"): lambda: forward_cached(ours.prior, latents, t, cache),
        ("decoder", "diffusers"): lambda: theirs.decoder(sample=x64, timestep=t, encoder_hidden_states=context,
                                                         class_labels=added, attention_mask=context_mask),
        ("decoder", "pictext"): lambda: ours.decoder(sample=ours._laid_out(x64), timestep=t,
                                                     encoder_hidden_states=context, class_labels=added,
                                                     attention_mask=context_mask),
        ("super_res", "diffusers"): lambda: theirs.super_res_first(sample=x256, timestep=t),
        ("super_res_first_step", "pictext"): lambda: ours.super_res_first(sample=x256, timestep=t),
        ("super_res", "pictext"): lambda: ours.super_res_first(sample=ours._laid_out(x256), timestep=t),
        ("super_res_switch", "pictext"): lambda: (ours.super_res_first.to(memory_format=torch.contiguous_format),
                                                  ours.super_res_first.to(memory_format=torch.channels_last)),
    }  # fmt: skip

    def layout(key: tuple) -> None:  # the networks are shared: pictext's layouts only for pictext's turns
        ours.use_channels_last(key[1] == "pictext")
        if key in (("super_res", "pictext"), ("super_res_switch", "pictext")):  # its steps after t=999
            ours.super_res_first.to(memory_format=torch.channels_last)

    for key, fn in work.items():
        layout(key)
        fn()  # warm-up
    best: dict[tuple, float] = {}
    for _ in range(REPEATS):
        for key, fn in work.items():
            layout(key)
            best[key] = min(best.get(key, float("inf")), timed(fn))
            print(f"{key[0]:>12} {key[1]:>9}: {best[key]:.3f} s", flush=True)
    out: dict[str, dict[str, float]] = {}
    for (stage, system), seconds in best.items():
        out.setdefault(system, {})[stage] = round(seconds, 3)
    return out


def picture_seconds(per: dict[str, float]) -> float:
    """One 256 px picture at the default steps from the per-step seconds. pictext's: its prior's prefix once;
    its first super-resolution step in the usual layout, the other 6 in channels-last, and the switch of
    super_res_first's layout there and back (`KarloPipeline.super_resolve`)."""
    seconds = per["text"] + sum(per[stage] * n for stage, n in STEPS.items())
    if "super_res_first_step" in per:
        seconds += per["prior_prefix"] + per["super_res_first_step"] - per["super_res"] + per["super_res_switch"]
    return seconds


def main() -> None:
    start = time.perf_counter()
    theirs, ours = build()
    built = time.perf_counter() - start
    print(
        f"built in {built:.0f} s; peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB", flush=True
    )
    per = measure(theirs, ours)
    whole = {system: round(picture_seconds(p), 1) for system, p in per.items()}
    summary = {
        "ratio_vs_diffusers": round(whole["diffusers"] / whole["pictext"], 3),
        "prior_step_ratio": round(per["diffusers"]["prior"] / per["pictext"]["prior"], 2),
        "decoder_step_ratio": round(per["diffusers"]["decoder"] / per["pictext"]["decoder"], 3),
        "super_res_step_ratio": round(per["diffusers"]["super_res"] / per["pictext"]["super_res"], 3),
        "minutes_per_picture_pictext": round(whole["pictext"] / 60, 1),
        "minutes_per_picture_diffusers": round(whole["diffusers"] / 60, 1),
    }
    machine = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "native_bf16": cpu_has_fast_bf16(),
               "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 1),
               "bench_minutes": round((time.perf_counter() - start) / 60, 1)}  # fmt: skip
    out = {
        "summary": summary,
        "seconds_per_step": per,
        "seconds_per_picture": whole,
        "steps": STEPS,
        "machine": machine,
    }
    (Path(__file__).parent / "results" / "karlo.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
