"""The discrete VAE of DALL-E: an image as a grid of tokens, trained with the gumbel-softmax relaxation.

Ramesh et al. 2021, section 2.1 and appendix A; reference code: OpenAI's `dall-e` package
(github.com/openai/DALL-E: `dall_e/encoder.py`, `decoder.py`, `utils.py`). The encoder and decoder here are
that architecture with the same parameter names (`blocks.group_1.block_1.res_path.conv_1.w`, ...), so its
state dicts load unchanged and give the same outputs (tests/test_dvae.py). Differences from the paper's
training, all on the training side: the reconstruction term is the paper's logit-Laplace likelihood, the
KL term is to a uniform prior over the codebook with its weight warmed up, and the relaxation temperature
is annealed from `tau_start` to `tau_end`, which it reaches (`temperature()`).

OpenAI's released `encoder.pkl` / `decoder.pkl` are whole pickled modules; `load_openai_dvae` reads them as
data (no class from the file is imported or run) and builds these modules from their tensors.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pictext.config import SIDE, WIDTH

LOGIT_LAPLACE_EPS = 0.1  # pixels are mapped into [eps, 1 - eps] so their logit stays finite


@dataclass(frozen=True)
class DVAEConfig:
    # the bounds a config read from a file must keep (pictext.config)
    LIMITS: ClassVar[dict] = {
        "vocab_size": (1, 1 << 18),
        "n_hid": WIDTH,
        "n_blk_per_group": (1, 16),
        "n_init": WIDTH,
        "channels": (1, 64),
        "resolution": SIDE,
    }
    vocab_size: int = 8192  # codebook size
    n_hid: int = 256  # encoder and decoder width of the first group (groups double it: 1, 2, 4, 8)
    n_blk_per_group: int = 2
    n_init: int = 128  # decoder: width the codes are projected to
    channels: int = 3
    resolution: int = 256  # training image side; the grid is resolution // 8

    @property
    def factor(self) -> int:
        return 8  # three 2x poolings

    @property
    def n_embed(self) -> int:  # the name the image tokenizers share
        return self.vocab_size


class Conv2d(nn.Module):
    """A convolution with `w` and `b` parameters and 'same' padding, as OpenAI's `dall_e.utils.Conv2d`."""

    def __init__(self, n_in: int, n_out: int, kw: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(n_out, n_in, kw, kw) / math.sqrt(n_in * kw**2))
        self.b = nn.Parameter(torch.zeros(n_out))
        self.kw = kw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.w, self.b, padding=(self.kw - 1) // 2)


class _Block(nn.Module):
    """Residual block: identity (or 1x1 conv) + post_gain * four ReLU-conv layers at a quarter of the width."""

    def __init__(self, n_in: int, n_out: int, n_layers: int, kernels: tuple[int, int, int, int]) -> None:
        super().__init__()
        hid = n_out // 4
        self.post_gain = 1 / n_layers**2
        self.id_path = Conv2d(n_in, n_out, 1) if n_in != n_out else nn.Identity()
        widths = [(n_in, hid), (hid, hid), (hid, hid), (hid, n_out)]
        layers: list[tuple[str, nn.Module]] = []
        for i, ((a, b), k) in enumerate(zip(widths, kernels), start=1):
            layers += [(f"relu_{i}", nn.ReLU()), (f"conv_{i}", Conv2d(a, b, k))]
        self.res_path = nn.Sequential(OrderedDict(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.id_path(x) + self.post_gain * self.res_path(x)


def _group(blocks: list[nn.Module], resample: tuple[str, nn.Module] | None) -> nn.Sequential:
    named = [(f"block_{i + 1}", b) for i, b in enumerate(blocks)]
    return nn.Sequential(OrderedDict(named + ([resample] if resample else [])))


class Encoder(nn.Module):
    def __init__(self, c: DVAEConfig) -> None:
        super().__init__()
        n, per, layers = c.n_hid, c.n_blk_per_group, 4 * c.n_blk_per_group
        widths = [(n, n), (n, 2 * n), (2 * n, 4 * n), (4 * n, 8 * n)]
        groups: list[tuple[str, nn.Module]] = [("input", Conv2d(c.channels, n, 7))]
        for g, (w_in, w_out) in enumerate(widths, start=1):
            blocks = [_Block(w_in if i == 0 else w_out, w_out, layers, (3, 3, 3, 1)) for i in range(per)]
            groups.append((f"group_{g}", _group(blocks, ("pool", nn.MaxPool2d(2)) if g < 4 else None)))
        groups.append(
            ("output", nn.Sequential(OrderedDict([("relu", nn.ReLU()), ("conv", Conv2d(8 * n, c.vocab_size, 1))])))
        )
        self.blocks = nn.Sequential(OrderedDict(groups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) mapped pixels -> (B, vocab, H/8, W/8) logits
        return self.blocks(x)


class Decoder(nn.Module):
    def __init__(self, c: DVAEConfig) -> None:
        super().__init__()
        n, per, layers = c.n_hid, c.n_blk_per_group, 4 * c.n_blk_per_group
        widths = [(c.n_init, 8 * n), (8 * n, 4 * n), (4 * n, 2 * n), (2 * n, n)]
        groups: list[tuple[str, nn.Module]] = [("input", Conv2d(c.vocab_size, c.n_init, 1))]
        for g, (w_in, w_out) in enumerate(widths, start=1):
            blocks = [_Block(w_in if i == 0 else w_out, w_out, layers, (1, 3, 3, 3)) for i in range(per)]
            up = ("upsample", nn.Upsample(scale_factor=2, mode="nearest")) if g < 4 else None
            groups.append((f"group_{g}", _group(blocks, up)))
        groups.append(
            ("output", nn.Sequential(OrderedDict([("relu", nn.ReLU()), ("conv", Conv2d(n, 2 * c.channels, 1))])))
        )
        self.blocks = nn.Sequential(OrderedDict(groups))

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, vocab, h, w) one-hot or soft codes -> (B, 6, 8h, 8w)
        return self.blocks(z)


def map_pixels(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [eps, 1 - eps]."""
    return (1 - 2 * LOGIT_LAPLACE_EPS) * x + LOGIT_LAPLACE_EPS


def unmap_pixels(x: torch.Tensor) -> torch.Tensor:
    return ((x - LOGIT_LAPLACE_EPS) / (1 - 2 * LOGIT_LAPLACE_EPS)).clamp(0, 1)


@dataclass
class DVAEEncoded:
    indices: torch.Tensor  # (B, h, w) the most likely code of each cell


@dataclass
class DVAEOutput:
    loss: torch.Tensor  # reconstruction NLL + kl_weight * KL
    reconstruction_nll: torch.Tensor  # logit-Laplace negative log-likelihood per pixel channel
    kl: torch.Tensor  # KL(q(z|x) || uniform) per grid cell
    reconstruction: torch.Tensor  # (B, 3, H, W) in [-1, 1]


class DVAE(nn.Module):
    """Encoder and decoder, with the interface pictext's image tokenizers share (encode -> indices,
    decode_indices), in pictext's pixel convention: images in [-1, 1]."""

    def __init__(self, config: DVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def encode(self, x: torch.Tensor) -> DVAEEncoded:  # (B, 3, H, W) in [-1, 1]
        logits = self.encoder(map_pixels((x + 1) / 2))
        return DVAEEncoded(logits.argmax(1))

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:  # (B, h, w) -> (B, 3, 8h, 8w) in [-1, 1]
        z = F.one_hot(indices, self.config.vocab_size).permute(0, 3, 1, 2).float()
        return self._pixels(self.decoder(z))

    def _pixels(self, stats: torch.Tensor) -> torch.Tensor:
        return unmap_pixels(torch.sigmoid(stats[:, : self.config.channels])) * 2 - 1

    def forward(
        self, x: torch.Tensor, tau: float, kl_weight: float, generator: torch.Generator | None = None
    ) -> DVAEOutput:
        """The relaxed training pass: gumbel-softmax(encoder logits / tau) fed to the decoder."""
        target = map_pixels((x + 1) / 2)  # in [eps, 1 - eps]
        logits = self.encoder(target)  # (B, V, h, w)
        u = torch.rand(logits.shape, generator=generator).clamp(1e-20, 1 - 1e-7)
        gumbel = -torch.log(-torch.log(u))  # standard Gumbel noise
        soft = F.softmax((logits + gumbel.to(logits)) / tau, dim=1)
        stats = self.decoder(soft)  # (B, 6, H, W): mu and log-scale of a logit-Laplace per pixel channel
        nll = logit_laplace_nll(target, stats[:, : self.config.channels], stats[:, self.config.channels :])
        log_q = F.log_softmax(logits, dim=1)
        kl = (log_q.exp() * (log_q + math.log(self.config.vocab_size))).sum(1).mean()
        return DVAEOutput(nll + kl_weight * kl, nll, kl, self._pixels(stats))


def logit_laplace_nll(x: torch.Tensor, mu: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of x in (0, 1) under the logit-Laplace distribution (the paper's eq. 2):
    p(x) = exp(-|logit(x) - mu| / b) / (2 b x (1 - x))."""
    logit = torch.log(x) - torch.log1p(-x)
    nll = (logit - mu).abs() * torch.exp(-log_b) + log_b + math.log(2) + torch.log(x) + torch.log1p(-x)
    return nll.mean()


def temperature(step: int, total: int, start: float = 1.0, end: float = 1 / 16, anneal_fraction: float = 0.8) -> float:
    """Relaxation temperature: cosine from `start` to `end` over the first `anneal_fraction` of training, then
    exactly `end` (the paper anneals 1 -> 1/16; a schedule that never reaches its floor trains a decoder that
    has never seen near-one-hot codes)."""
    span = max(1, int(total * anneal_fraction))
    if step >= span:
        return end
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * step / span))


def kl_weight(step: int, warmup: int, final: float) -> float:
    """KL weight warmed up linearly from 0 to `final` over `warmup` steps (the paper: 0 -> 6.6 over 5000)."""
    return final * min(1.0, step / max(1, warmup))


def train_dvae(
    model: DVAE, images: torch.Tensor, steps: int, batch_size: int = 32, lr: float = 1e-3, kl_final: float = 1.0,
    kl_warmup: int | None = None, tau_end: float = 1 / 16, seed: int = 0, precision: str = "fp32",
    run_dir: str | os.PathLike | None = None,
) -> list[dict[str, float]]:  # fmt: skip
    """Fit on a (N, 3, H, W) tensor of images in [-1, 1] on the training driver (ranks, resume); returns each
    step's terms. The temperature anneals to `tau_end`, the KL weight warms up to `kl_final`."""
    from pictext import training

    cfg = training.TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup=1, schedule="constant",
                               precision=precision, seed=seed)  # fmt: skip
    warmup = kl_warmup if kl_warmup is not None else steps // 2
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step(batch: training.Batch) -> training.StepResult:
        tau, beta = temperature(batch.step, steps, end=tau_end), kl_weight(batch.step, warmup, kl_final)
        out = model(images[torch.as_tensor(batch.indices)].to(batch.device), tau, beta, generator=batch.generator(5))
        logs = {"loss": out.loss.item(), "nll": out.reconstruction_nll.item(), "kl": out.kl.item(), "tau": tau,
                "kl_weight": beta}  # fmt: skip
        return training.StepResult({"opt": out.loss}, logs)

    model.train()
    logs = training.fit(step, {"model": model}, {"opt": opt}, len(images), cfg, run_dir=run_dir, config=model.config,
                        desc="train dvae")  # fmt: skip
    model.eval()
    return logs


# ---- OpenAI's released modules, read as data ------------------------------------------------------------------------


def module_state(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict of a pickled nn.Module read with the inert unpickler: walks `_parameters`, `_buffers`
    and `_modules` of the recorded object states."""
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        return {}
    out: dict[str, torch.Tensor] = {}
    for kind in ("_parameters", "_buffers"):
        for name, value in (state.get(kind) or {}).items():
            if isinstance(value, torch.Tensor):
                out[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        out |= module_state(child, f"{prefix}{name}.")
    return out


def load_openai_dvae(encoder_pkl: str | os.PathLike, decoder_pkl: str | os.PathLike) -> DVAE:
    """A DVAE from OpenAI's `encoder.pkl` and `decoder.pkl` (torch.save of whole modules), read as data; the
    architecture their tensors describe is bounded and built on the meta device before any memory is spent."""
    from pictext.checkpoint import CheckpointError, build_loaded, check_tensors
    from pictext.config import from_dict
    from pictext.torchscript import read_pickle_data

    files = f"{encoder_pkl} / {decoder_pkl}"
    try:
        enc = check_tensors(module_state(read_pickle_data(encoder_pkl)), encoder_pkl)
        dec = check_tensors(module_state(read_pickle_data(decoder_pkl)), decoder_pkl)
    except RecursionError as e:
        raise CheckpointError(f"{files}: modules nested too deeply to be a dVAE") from e
    if "blocks.input.w" not in enc or "blocks.input.w" not in dec or "blocks.output.conv.w" not in enc:
        raise CheckpointError(f"{files}: not OpenAI dVAE modules (no blocks.input.w)")
    try:
        config = from_dict(DVAEConfig, {
            "vocab_size": enc["blocks.output.conv.w"].shape[0],
            "n_hid": enc["blocks.input.w"].shape[0],
            "n_blk_per_group": len({k.split(".")[2] for k in enc if k.startswith("blocks.group_1.")}),
            "n_init": dec["blocks.input.w"].shape[0],
            "channels": enc["blocks.input.w"].shape[1],
        })  # fmt: skip
    except (IndexError, TypeError, ValueError) as e:
        raise CheckpointError(f"{files}: tensors that describe no dVAE pictext builds ({e})") from e
    tensors = {f"encoder.{k}": v for k, v in enc.items()} | {f"decoder.{k}": v for k, v in dec.items()}
    return build_loaded(lambda: DVAE(config), tensors, files)
