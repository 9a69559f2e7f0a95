"""Import taming-transformers checkpoints: a `.ckpt` (PyTorch Lightning) and the YAML beside it.

The checkpoint is read as data: its pickle is replayed with an unpickler that rebuilds tensors from the
zip's storages and turns every other class or function it names (Lightning callbacks, OmegaConf configs,
optimizer state) into an inert placeholder, so no code from the file runs and neither pytorch-lightning nor
taming is needed. The YAML gives the architecture (`model.params.ddconfig`, `n_embed`, `embed_dim`); the
loss's weights (`loss.*`: discriminator, LPIPS) are left out, since pictext's trainer has its own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from pictext.checkpoint import CheckpointError
from pictext.torchscript import read_pickle_data
from pictext.vqgan.model import VQGAN, VQGANConfig


def read_checkpoint_data(path: str | os.PathLike) -> Any:
    try:
        return read_pickle_data(path)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; a taming .ckpt is one") from e


def config_from_taming(params: dict[str, Any], target: str) -> VQGANConfig:
    """VQGANConfig from a taming YAML's `model.params` (VQModel or GumbelVQ)."""
    dd = params.get("ddconfig")
    if not isinstance(dd, dict) or "n_embed" not in params or "embed_dim" not in params:
        raise CheckpointError("the YAML has no model.params.ddconfig, n_embed and embed_dim: not a taming VQGAN config")
    if dd.get("double_z"):
        raise CheckpointError("ddconfig.double_z is true: that is a KL autoencoder, not a VQGAN")
    gumbel = target.rsplit(".", 1)[-1] == "GumbelVQ"
    return VQGANConfig(
        resolution=int(dd["resolution"]),
        in_channels=int(dd.get("in_channels", 3)),
        out_ch=int(dd.get("out_ch", 3)),
        ch=int(dd["ch"]),
        ch_mult=tuple(int(m) for m in dd["ch_mult"]),
        num_res_blocks=int(dd["num_res_blocks"]),
        attn_resolutions=tuple(int(r) for r in dd.get("attn_resolutions", ())),
        dropout=float(dd.get("dropout", 0.0)),
        z_channels=int(dd["z_channels"]),
        embed_dim=int(params["embed_dim"]),
        n_embed=int(params["n_embed"]),
        quantizer="gumbel" if gumbel else "vq",
        kl_weight=float(params.get("kl_weight", 5e-4)),
    )


def load_taming(ckpt: str | os.PathLike, config: str | os.PathLike | None = None) -> VQGAN:
    """A VQGAN (eval mode) from a taming `.ckpt` and its YAML (default: the .yaml beside the .ckpt)."""
    import yaml

    ckpt = Path(ckpt)
    config = Path(config) if config else _yaml_beside(ckpt)
    try:
        model_cfg = yaml.safe_load(config.read_text())["model"]
        vq_config = config_from_taming(model_cfg["params"], str(model_cfg.get("target", "")))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{config} is not a taming VQGAN config ({e.__class__.__name__}: {e})") from e
    data = read_checkpoint_data(ckpt)
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{ckpt} holds no state dict of tensors")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor) and not k.startswith("loss.")}
    model = VQGAN(vq_config)
    expected = model.state_dict()
    wrong = sorted(set(expected) ^ set(tensors))[:4]
    wrong += [k for k in expected if k in tensors and expected[k].shape != tensors[k].shape][:4]
    if wrong:
        raise CheckpointError(f"{ckpt} does not match {config} (first differences: {wrong})")
    model.load_state_dict({k: tensors[k].float() for k in expected})
    return model.eval()


def _yaml_beside(ckpt: Path) -> Path:
    for candidate in (ckpt.with_suffix(".yaml"), ckpt.parent / "model.yaml", ckpt.parent / "config.yaml"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"no YAML config beside {ckpt} (looked for {ckpt.with_suffix('.yaml').name}); pass it")
