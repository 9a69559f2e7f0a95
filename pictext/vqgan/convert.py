"""Import taming-transformers checkpoints: a `.ckpt` (PyTorch Lightning) and the YAML beside it.

The checkpoint is read as data: its pickle is replayed with an unpickler that rebuilds tensors from the
zip's storages and turns every other class or function it names (Lightning callbacks, OmegaConf configs,
optimizer state) into an inert placeholder, so no code from the file runs and neither pytorch-lightning nor
taming is needed. The YAML gives the architecture (`model.params.ddconfig`, `n_embed`, `embed_dim`); the
loss's weights (`loss.*`: discriminator, LPIPS) are left out, since pictext's trainer has its own.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from pictext.checkpoint import CheckpointError, build_loaded, check_tensors
from pictext.config import from_dict
from pictext.torchscript import read_pickle_data
from pictext.vqgan.model import VQGAN, VQGANConfig


def read_checkpoint_data(path: str | os.PathLike) -> Any:
    try:
        return read_pickle_data(path)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; a taming .ckpt is one") from e


def config_from_taming(params: dict[str, Any], target: str) -> VQGANConfig:
    """VQGANConfig from a taming YAML's `model.params` (VQModel or GumbelVQ), its values checked and bounded
    (pictext.config) before anything is built from them."""
    dd = params.get("ddconfig")
    if not isinstance(dd, dict) or "n_embed" not in params or "embed_dim" not in params:
        raise CheckpointError("the YAML has no model.params.ddconfig, n_embed and embed_dim: not a taming VQGAN config")
    if dd.get("double_z"):
        raise CheckpointError("ddconfig.double_z is true: that is a KL autoencoder, not a VQGAN")
    fields = {"resolution": dd.get("resolution"), "in_channels": dd.get("in_channels", 3),
              "out_ch": dd.get("out_ch", 3), "ch": dd.get("ch"), "ch_mult": dd.get("ch_mult"),
              "num_res_blocks": dd.get("num_res_blocks"),
              "attn_resolutions": dd.get("attn_resolutions", []), "dropout": dd.get("dropout", 0.0),
              "z_channels": dd.get("z_channels"), "embed_dim": params["embed_dim"], "n_embed": params["n_embed"],
              "kl_weight": params.get("kl_weight", 5e-4),
              "quantizer": "gumbel" if target.rsplit(".", 1)[-1] == "GumbelVQ" else "vq"}  # fmt: skip
    config = from_dict(VQGANConfig, fields)
    if not config.ch_mult:
        raise ValueError("model.params.ddconfig.ch_mult is empty; a VQGAN has at least one level")
    if config.resolution % config.factor:
        raise ValueError(f"model.params.ddconfig.resolution {config.resolution} is not a multiple of the "
                         f"downsampling factor {config.factor}")  # fmt: skip
    return config


def load_taming(ckpt: str | os.PathLike, config: str | os.PathLike | dict | None = None) -> VQGAN:
    """A VQGAN (eval mode) from a taming `.ckpt` and its YAML (default: the .yaml beside the .ckpt), or the YAML's
    `model` section as a dict (`target`, `params`: as the registry gives ruDALL-E's VQGAN, whose YAML ships in a
    package rather than beside the file); the model is built on the meta device and checked against the
    checkpoint's tensors before any memory is spent on it."""
    import yaml

    ckpt = Path(ckpt)
    config = config if isinstance(config, dict) else Path(config) if config else _yaml_beside(ckpt)
    try:
        if isinstance(config, dict):
            model_cfg = config
        else:
            if config.stat().st_size > MAX_YAML:
                raise ValueError(f"{config.stat().st_size} bytes; a taming config is a few hundred")
            model_cfg = yaml.safe_load(config.read_text(encoding="utf-8"))["model"]
        vq_config = config_from_taming(model_cfg["params"], str(model_cfg.get("target", "")))
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
        raise CheckpointError(f"{config} is not a taming VQGAN config ({e.__class__.__name__}: {e})") from e
    data = read_checkpoint_data(ckpt)
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{ckpt} holds no state dict of tensors")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor) and not k.startswith("loss.")}
    tensors, vq_config = dwt_layout(check_tensors(tensors, ckpt), vq_config, ckpt)
    return build_loaded(lambda: VQGAN(vq_config), tensors, f"{ckpt} (with {config})")


def dwt_layout(tensors: dict[str, torch.Tensor], config: VQGANConfig, source: object = "the checkpoint"
               ) -> tuple[dict[str, torch.Tensor], VQGANConfig]:  # fmt: skip
    """A checkpoint of the Sber VQGAN's DWT variant (ruDALL-E's `get_vae(dwt=True)`: its VQGanGumbelVAE saved
    whole, "model." before each name; taming's decoder wrapped as decoder.decoder, drawing 12 channels of Haar
    coefficients, beside the wrapper's own post_quant_conv and its inverse transform's filters) in taming's
    names, with `wavelet` set in its config; any other checkpoint as it is. The GumbelVQ's own post_quant_conv,
    which the DWT decoder never uses, is dropped; filters other than Haar's are refused."""
    names = {k.removeprefix("model.") if all(n.startswith("model.") for n in tensors) else k: v
             for k, v in tensors.items()}  # fmt: skip
    if "decoder.decoder.conv_in.weight" not in names:
        return tensors, config
    haar = {"g0_col": (1, 1), "g1_col": (1, -1), "g0_row": (1, 1), "g1_row": (1, -1)}
    out = {}
    for key, value in names.items():
        if key.startswith("decoder.idwt."):
            want = torch.tensor(haar.get(key.rsplit(".", 1)[1], (0, 0)), dtype=torch.float64) / 2**0.5
            haar_filter = value.is_meta or torch.allclose(value.double().flatten(), want, atol=1e-6)  # meta: tests
            if value.numel() != 2 or not haar_filter:
                raise CheckpointError(f"{source}: {key} is not the Haar wavelet's filter; pictext draws with Haar only")
        elif key.startswith(("decoder.decoder.", "decoder.post_quant_conv.")):
            out[key.removeprefix("decoder.")] = value
        elif not key.startswith("post_quant_conv."):
            out[key] = value
    return out, replace(config, wavelet=True)


MAX_YAML = 1 << 20  # bytes


def _yaml_beside(ckpt: Path) -> Path:
    for candidate in (ckpt.with_suffix(".yaml"), ckpt.parent / "model.yaml", ckpt.parent / "config.yaml"):
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"no YAML config beside {ckpt} (looked for {ckpt.with_suffix('.yaml').name}); pass it")
