"""Tiny training runs of every family on the training driver, the same in a test process and under torchrun.

`python tests/family_runs.py FAMILY OUT [RUN_DIR [STOP_AFTER]]` trains FAMILY's tiny model from a fixed seed and
has rank 0 save {"logs", "weights"} to OUT; `torchrun --nproc_per_node 2 tests/family_runs.py ...` does the same
on 2 gloo ranks. With RUN_DIR the run is resumable there; STOP_AFTER kills it (os._exit) right after that step.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch

FAMILIES = ("clip", "vqgan", "dalle", "unclip-prior", "unclip-decoder", "unclip-upsampler")
STEPS = 4


def _shapes(size: int, length: int = 64):
    from pictext.data.shapes import ShapesWorld

    return ShapesWorld(size=size, length=length, max_shapes=2, grey_fraction=0.25, seed=0)


def clip(run_dir, on_step) -> tuple[list, torch.nn.Module]:
    from pictext.clip.recipe import CLIPRecipe, build_model
    from pictext.clip.train import CLIPTrainConfig, train_clip

    recipe = CLIPRecipe(image_size=32, vision_width=32, vision_layers=1, text_width=32, text_layers=1, embed_dim=32)
    data = _shapes(64)
    model = build_model(recipe, data)
    cfg = CLIPTrainConfig(steps=STEPS, batch_size=8, lr=2e-3, warmup=2, precision="fp32", checkpoint_every=2)
    return train_clip(model, data, cfg, run_dir=run_dir, on_step=on_step), model


def vqgan(run_dir, on_step) -> tuple[list, torch.nn.Module]:
    from pictext.vqgan.model import VQGAN, VQGANConfig
    from pictext.vqgan.train import VQGANTrainConfig, train_vqgan

    torch.manual_seed(0)
    config = VQGANConfig(resolution=16, ch=32, ch_mult=(1, 1), num_res_blocks=1, attn_resolutions=(), z_channels=8,
                         embed_dim=8, n_embed=16, ema_decay=0.9, restart_after=1)  # fmt: skip
    model = VQGAN(config)
    # disc_start past the run: the discriminator's BatchNorm statistics are each rank's own (as under DDP without
    # SyncBatchNorm), so its phase is not one process's; the EMA codebook and its restarts are (summed over ranks)
    cfg = VQGANTrainConfig(steps=STEPS, batch_size=8, lr=1e-3, warmup=1, disc_start=10**9, precision="fp32",
                           checkpoint_every=2)  # fmt: skip
    logs = train_vqgan(model, _shapes(16), cfg, run_dir=run_dir, on_step=on_step)
    return [dataclasses.asdict(log) for log in logs], model


def dalle(run_dir, on_step) -> tuple[list, torch.nn.Module]:
    from pictext.dalle.model import DALLE, DALLEConfig
    from pictext.dalle.train import DALLETrainConfig, train_dalle

    g = torch.Generator().manual_seed(0)
    tokens, texts = torch.randint(0, 32, (40, 4, 4), generator=g), torch.randint(3, 60, (40, 8), generator=g)
    torch.manual_seed(0)
    model = DALLE(DALLEConfig(text_vocab=64, image_vocab=32, text_len=8, image_grid=4, width=32, layers=2, heads=2))
    cfg = DALLETrainConfig(steps=STEPS, batch_size=8, warmup=2, precision="fp32", checkpoint_every=2,
                           caption_dropout=0.25)  # fmt: skip
    logs = train_dalle(model, tokens, texts, cfg, run_dir=run_dir, on_step=on_step)
    return [dataclasses.asdict(log) for log in logs], model


def _unclip_cfg():
    from pictext.unclip.train import UnclipTrainConfig

    return UnclipTrainConfig(steps=STEPS, batch_size=8, warmup=2, precision="fp32", checkpoint_every=2,
                             condition_dropout=0.25, ema_decay=0.9)  # fmt: skip


def _embedded(n: int):
    from pictext.unclip.prior import TextCondition
    from pictext.unclip.train import Embedded

    g = torch.Generator().manual_seed(0)
    mask = torch.ones(n, 6, dtype=torch.bool)
    mask[:, 4:] = False
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    text = TextCondition(unit(torch.randn(n, 16, generator=g)), torch.randn(n, 6, 16, generator=g), mask)
    return Embedded(unit(torch.randn(n, 16, generator=g)), text, [f"caption {i}" for i in range(n)])


def unclip_prior(run_dir, on_step) -> tuple[list, torch.nn.Module]:
    from pictext.unclip.prior import DiffusionPrior, PriorConfig
    from pictext.unclip.train import train_prior

    torch.manual_seed(0)
    prior = DiffusionPrior(PriorConfig(embed_dim=16, text_len=6, width=32, heads=2, layers=2))
    return train_prior(prior, _embedded(32), _unclip_cfg(), run_dir, on_step=on_step), prior


def unclip_decoder(run_dir, on_step) -> tuple[list, torch.nn.Module]:
    from pictext.unclip.decoder import DecoderConfig, DiffusionDecoder
    from pictext.unclip.train import train_decoder

    torch.manual_seed(0)
    decoder = DiffusionDecoder(DecoderConfig(embed_dim=16, resolution=8, channels=(32, 32), cross_dim=32, head_dim=16))
    data = _shapes(8, length=32)
    return train_decoder(decoder, data, _embedded(32), _unclip_cfg(), run_dir, on_step=on_step), decoder


def unclip_upsampler(run_dir, on_step) -> tuple[list, torch.nn.Module]:
    from pictext.unclip.train import train_upsampler
    from pictext.unclip.upsampler import DiffusionUpsampler, UpsamplerConfig

    torch.manual_seed(0)
    upsampler = DiffusionUpsampler(UpsamplerConfig(low=8, resolution=16, channels=(32, 32)))
    return train_upsampler(upsampler, _shapes(16, length=32), _unclip_cfg(), run_dir, on_step=on_step), upsampler


RUNS: dict[str, Callable] = {"clip": clip, "vqgan": vqgan, "dalle": dalle, "unclip-prior": unclip_prior,
                             "unclip-decoder": unclip_decoder, "unclip-upsampler": unclip_upsampler}  # fmt: skip


def main(family: str, out: str, run_dir: str | None = None, stop_after: int | None = None) -> None:
    def stop(step: int, log: object) -> None:
        if stop_after is not None and step + 1 == stop_after:
            os._exit(3)  # as a crash would: nothing after this step runs, no clean-up

    torch.set_num_threads(1)
    logs, model = RUNS[family](Path(run_dir) if run_dir else None, stop)
    if int(os.environ.get("RANK", 0)) == 0:
        torch.save({"logs": logs, "weights": model.state_dict()}, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *sys.argv[3:4], *(int(a) for a in sys.argv[4:5]))
    os._exit(
        0
    )  # past torch 2.14's gloo, which sometimes aborts a rank in its static destructors (tests/test_losses.py)
