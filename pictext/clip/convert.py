"""Import and export CLIP weights: OpenAI, OpenCLIP and Hugging Face layouts.

OpenAI and OpenCLIP already use our parameter names; Hugging Face splits the
attention projections and renames everything. The architecture is inferred from
tensor shapes where the file carries no config, as OpenAI's `build_model` does.
The activation cannot be inferred from tensors, so it is never guessed: OpenAI
archives are QuickGELU, Hugging Face configs name theirs, and for a bare
OpenCLIP state dict the caller must say.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pictext.checkpoint import CheckpointError, build_loaded, check_tensors, read_json_config
from pictext.clip.model import CLIP, CLIPConfig, TextConfig, VisionConfig
from pictext.config import from_dict, to_dict
from pictext.errors import UsageError
from pictext.files import atomic_write
from pictext.images.transforms import OPENAI_MEAN, OPENAI_STD, Preprocess
from pictext.torchscript import is_torchscript, read_pickle_data, read_torchscript_tensors

_IGNORED_KEYS = ("attn_mask", "input_resolution", "context_length", "vocab_size", "text_model.embeddings.position_ids")


def read_foreign(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, str]:
    """(state dict, Hugging Face config or None, source) from a file or a Hugging Face folder.

    source is "torchscript", "huggingface" or "state_dict". Nothing is unpickled beyond tensors.
    """
    path = Path(path)
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.is_file():
            raise CheckpointError(f"{path} is a folder without config.json, so not a Hugging Face model folder")
        weights = next((path / n for n in ("model.safetensors", "pytorch_model.bin") if (path / n).is_file()), None)
        if weights is None:
            raise CheckpointError(f"{path} has no model.safetensors or pytorch_model.bin")
        sd, _, _ = read_foreign(weights)
        return sd, read_json_config(config_file, "a Hugging Face config"), "huggingface"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path)), None, "state_dict"
        except SafetensorError as e:
            raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e
    if is_torchscript(path):
        return check_tensors(read_torchscript_tensors(path), path), None, "torchscript"
    if zipfile.is_zipfile(path):  # what torch.save writes: read as data, sizes checked (torchscript.py)
        return check_tensors(_unwrap(read_pickle_data(path), path), path), None, "state_dict"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)  # the safe unpickler: tensors and containers only
    except Exception as e:  # a random or truncated file fails inside the unpickler in many ways
        raise CheckpointError(
            f"{path} is not a checkpoint pictext can read (truncated or another format): {unpickler_reason(e)}"
        ) from e
    return check_tensors(_unwrap(obj, path), path), None, "state_dict"


def unpickler_reason(e: Exception) -> str:
    """torch's error without its advice to retry with weights_only=False, which would run the file's code."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation")[0]
        return "the safe unpickler refused it: " + " ".join(detail.split())
    first = text.strip().splitlines()[0] if text.strip() else ""
    return type(e).__name__ if not first or "weights_only" in first else first


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Find the state dict in an OpenCLIP training checkpoint: nested `state_dict`, `module.` prefixes."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def infer_config(sd: dict[str, torch.Tensor], activation: str) -> CLIPConfig:
    """Architecture from tensor shapes (OpenAI / OpenCLIP layout).

    The number of attention heads leaves no trace in the tensors: it is taken as width // 64, as in every
    OpenAI and LAION CLIP. A model trained with other heads needs its config passed (`load_clip(config=)`).
    """
    if "visual.proj" in sd:
        width = sd["visual.conv1.weight"].shape[0]
        patch = sd["visual.conv1.weight"].shape[-1]
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        layers: int | tuple[int, ...] = _count_blocks(sd, "visual.transformer.resblocks.")
        mlp = sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width
        vision = VisionConfig(image_size=patch * grid, layers=layers, width=width, patch_size=patch, mlp_ratio=mlp)
    elif "visual.attnpool.positional_embedding" in sd:
        layers = tuple(_count_blocks(sd, f"visual.layer{i}.") for i in range(1, 5))
        grid = round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        width = sd["visual.layer1.0.conv1.weight"].shape[0]
        vision = VisionConfig(image_size=grid * 32, layers=layers, width=width, patch_size=None)
    else:
        raise CheckpointError("not a CLIP state dict: no visual.proj (ViT) or visual.attnpool (ResNet) tensors")
    width = sd["ln_final.weight"].shape[0]
    vocab = sd["token_embedding.weight"].shape[0]
    text = TextConfig(
        context_length=sd["positional_embedding"].shape[0],
        vocab_size=vocab,
        width=width,
        heads=width // 64,
        layers=_count_blocks(sd, "transformer.resblocks."),
        mlp_ratio=sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width,
        eot_token_id=vocab - 1,  # OpenAI pools at argmax(token id); EOT is the largest id
    )
    return CLIPConfig(embed_dim=sd["text_projection"].shape[1], vision=vision, text=text, activation=activation)


def _count_blocks(sd: dict[str, torch.Tensor], prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in sd if k.startswith(prefix)})


def clip_from_state_dict(sd: dict[str, torch.Tensor], activation: str, config: CLIPConfig | None = None) -> CLIP:
    """A float32 CLIP from an OpenAI/OpenCLIP-layout state dict; unexpected or missing tensors raise.

    `config`, when given, replaces inference from the tensors (its activation must agree with `activation`).
    """
    sd = {k: v for k, v in sd.items() if k not in _IGNORED_KEYS}
    if config is not None and config.activation != activation:
        raise CheckpointError(f"activation={activation!r} contradicts the given config's {config.activation!r}")
    return _built(config or infer_config(sd, activation), sd)


def _built(config: CLIPConfig, sd: dict[str, torch.Tensor], path: object = "the state dict") -> CLIP:
    """CLIP(config) in eval mode holding `sd`, once the config is within pictext.config's bounds and its build on
    the meta device matches `sd` name for name and shape for shape (checkpoint.build_loaded)."""
    try:
        config = from_dict(CLIPConfig, to_dict(config))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: the CLIP its tensors describe is not one pictext builds ({e})") from e
    return build_loaded(lambda: CLIP(config), sd, path)


def clip_from_hf(sd: dict[str, torch.Tensor], config: dict[str, Any]) -> CLIP:
    """A CLIP from a Hugging Face `CLIPModel` state dict and its config.json."""
    return _built(*hf_to_openai(sd, config))


def hf_to_openai(sd: dict[str, torch.Tensor], config: dict[str, Any]) -> tuple[CLIPConfig, dict[str, torch.Tensor]]:
    """(pictext's config, the state dict in OpenAI's names) of a Hugging Face `CLIPModel` state dict and its
    config.json: q, k and v joined into one projection, every name mapped; works on the meta device too."""
    t, v = config.get("text_config", {}), config.get("vision_config", {})
    acts = {t.get("hidden_act", "quick_gelu"), v.get("hidden_act", "quick_gelu")}
    if len(acts) != 1 or not acts <= {"quick_gelu", "gelu"}:
        raise CheckpointError(f"unsupported Hugging Face activations {sorted(acts)}; pictext supports quick_gelu, gelu")
    ours = {k.removeprefix("clip."): val for k, val in sd.items()}  # some exports nest under "clip."
    out: dict[str, torch.Tensor] = {}
    for prefix, dst in (
        ("text_model.encoder.layers.", "transformer.resblocks."),
        ("vision_model.encoder.layers.", "visual.transformer.resblocks."),
    ):
        for i in range(_count_blocks(ours, prefix)):
            src = f"{prefix}{i}."
            for p in ("weight", "bias"):
                out[f"{dst}{i}.attn.in_proj_{p}"] = torch.cat([ours[f"{src}self_attn.{n}_proj.{p}"] for n in "qkv"])
                out[f"{dst}{i}.attn.out_proj.{p}"] = ours[f"{src}self_attn.out_proj.{p}"]
                out[f"{dst}{i}.ln_1.{p}"] = ours[f"{src}layer_norm1.{p}"]
                out[f"{dst}{i}.ln_2.{p}"] = ours[f"{src}layer_norm2.{p}"]
                out[f"{dst}{i}.mlp.c_fc.{p}"] = ours[f"{src}mlp.fc1.{p}"]
                out[f"{dst}{i}.mlp.c_proj.{p}"] = ours[f"{src}mlp.fc2.{p}"]
    for ours_name, hf_name in _HF_RENAMES:
        out[ours_name] = ours[hf_name]
    out["visual.proj"] = ours["visual_projection.weight"].T
    out["text_projection"] = ours["text_projection.weight"].T
    eos = t.get("eos_token_id", 49407)
    vocab = out["token_embedding.weight"].shape[0]
    hidden_t, hidden_v = out["ln_final.weight"].shape[0], out["visual.ln_post.weight"].shape[0]
    cfg = CLIPConfig(
        embed_dim=out["text_projection"].shape[1],
        vision=VisionConfig(
            image_size=v.get("image_size", 224),
            layers=_count_blocks(ours, "vision_model.encoder.layers."),
            width=hidden_v,
            patch_size=out["visual.conv1.weight"].shape[-1],
            head_width=hidden_v // v.get("num_attention_heads", hidden_v // 64),
            mlp_ratio=out["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / hidden_v,
        ),
        text=TextConfig(
            context_length=out["positional_embedding"].shape[0],
            vocab_size=vocab,
            width=hidden_t,
            heads=t.get("num_attention_heads", hidden_t // 64),
            layers=_count_blocks(ours, "text_model.encoder.layers."),
            mlp_ratio=out["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / hidden_t,
            eot_token_id=vocab - 1 if eos == 2 else eos,  # eos 2 marks old configs that pool at argmax
        ),
        activation=acts.pop(),
    )
    return cfg, out


_HF_RENAMES = [
    ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
    ("ln_final.weight", "text_model.final_layer_norm.weight"),
    ("ln_final.bias", "text_model.final_layer_norm.bias"),
    ("visual.class_embedding", "vision_model.embeddings.class_embedding"),
    ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"),
    ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"),
    ("visual.ln_pre.weight", "vision_model.pre_layrnorm.weight"),
    ("visual.ln_pre.bias", "vision_model.pre_layrnorm.bias"),
    ("visual.ln_post.weight", "vision_model.post_layernorm.weight"),
    ("visual.ln_post.bias", "vision_model.post_layernorm.bias"),
    ("logit_scale", "logit_scale"),
]


def hf_preprocess(folder: Path, image_size: int) -> Preprocess:
    file = folder / "preprocessor_config.json"
    if not file.is_file():
        return Preprocess(image_size=image_size)
    p = json.loads(file.read_text(encoding="utf-8"))
    return Preprocess(
        image_size=image_size, mean=tuple(p.get("image_mean", OPENAI_MEAN)), std=tuple(p.get("image_std", OPENAI_STD))
    )


def export_hf(model: CLIP, folder: str | os.PathLike) -> Path:
    """Write a folder that `transformers.CLIPModel.from_pretrained` loads (ViT image towers only)."""
    cfg = model.config
    _refuse_bert_text(model, "Hugging Face CLIPModel")
    if cfg.vision.is_resnet:
        raise UsageError("Hugging Face CLIPModel has no ResNet image tower; export ResNet models to OpenCLIP instead")
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {hf: sd[ours] for ours, hf in _HF_RENAMES}
    out["visual_projection.weight"] = sd["visual.proj"].T
    out["text_projection.weight"] = sd["text_projection"].T
    for prefix, src in (
        ("text_model.encoder.layers.", "transformer.resblocks."),
        ("vision_model.encoder.layers.", "visual.transformer.resblocks."),
    ):
        for i in range(_count_blocks(sd, src)):
            s, d = f"{src}{i}.", f"{prefix}{i}."
            for p in ("weight", "bias"):
                for name, chunk in zip("qkv", sd[f"{s}attn.in_proj_{p}"].chunk(3)):
                    out[f"{d}self_attn.{name}_proj.{p}"] = chunk
                out[f"{d}self_attn.out_proj.{p}"] = sd[f"{s}attn.out_proj.{p}"]
                out[f"{d}layer_norm1.{p}"], out[f"{d}layer_norm2.{p}"] = sd[f"{s}ln_1.{p}"], sd[f"{s}ln_2.{p}"]
                out[f"{d}mlp.fc1.{p}"], out[f"{d}mlp.fc2.{p}"] = sd[f"{s}mlp.c_fc.{p}"], sd[f"{s}mlp.c_proj.{p}"]
    t, v = cfg.text, cfg.vision
    config = {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": cfg.embed_dim,
        "logit_scale_init_value": float(sd["logit_scale"]),
        "text_config": {
            "hidden_size": t.width,
            "intermediate_size": int(t.width * t.mlp_ratio),
            "num_attention_heads": t.heads,
            "num_hidden_layers": t.layers,
            "max_position_embeddings": t.context_length,
            "vocab_size": t.vocab_size,
            "hidden_act": cfg.activation,
            "eos_token_id": t.eot_token_id,
            "bos_token_id": t.eot_token_id - 1,
            "pad_token_id": 1,
            "projection_dim": cfg.embed_dim,
        },
        "vision_config": {
            "hidden_size": v.width,
            "intermediate_size": int(v.width * v.mlp_ratio),
            "num_attention_heads": v.width // v.head_width,
            "num_hidden_layers": v.layers,
            "image_size": v.image_size,
            "patch_size": v.patch_size,
            "hidden_act": cfg.activation,
            "projection_dim": cfg.embed_dim,
        },
    }
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: t.contiguous() for k, t in out.items()}
    atomic_write(folder / "model.safetensors", lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    atomic_write(
        folder / "config.json", lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2), encoding="utf-8")
    )
    return folder


def export_open_clip(model: CLIP, path: str | os.PathLike) -> Path:
    """Write an OpenCLIP/OpenAI-layout `.safetensors` state dict (open_clip's `pretrained=` accepts it)."""
    _refuse_bert_text(model, "OpenCLIP's CLIP layout")
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(sd, tmp))


def _refuse_bert_text(model: CLIP, target: str) -> None:
    if model.config.text.kind == "bert":
        raise UsageError(
            f"this model's text tower is a BERT encoder (LiT), which {target} has no place for; "
            "keep it in pictext's native format (--to native)"
        )


# ---- ruCLIP ----------------------------------------------------------------------------------------------------------

RUCLIP_FILES = ("config.json", "pytorch_model.bin", "bpe.model")


def is_ruclip_folder(path: str | os.PathLike) -> bool:
    """A folder of Sber's ruCLIP (github.com/ai-forever/ru-clip): its config.json, weights and YouTokenToMe BPE."""
    return Path(path).is_dir() and all((Path(path) / name).is_file() for name in RUCLIP_FILES)


def load_ruclip(folder: str | os.PathLike) -> CLIP:
    """ruCLIP as pictext's CLIP (eval mode, float32), its Russian tokenizer and preprocessing with it.

    ruCLIP is OpenAI's CLIP architecture (QuickGELU, the same tensor names) with three differences, each carried
    over: its text feature is read at the EOS token (id 3 of its YouTokenToMe BPE, not the largest id), its
    text is lower-cased and laid out as BOS, tokens, EOS, zeros, and its pictures are the centred square of the
    short side resized bilinearly. `pytorch_model.bin` is read as data."""
    from pictext.text.yttm import YTTMTokenizer

    folder = Path(folder)
    config = read_json_config(folder / "config.json", "ruCLIP's config.json")
    weights = folder / "pytorch_model.bin"
    sd = read_pickle_data(weights)
    if not isinstance(sd, dict) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{weights} holds no state dict of tensors")
    sd = check_tensors({k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}, weights)
    try:
        inferred = infer_config(sd, "quick_gelu")
        text = from_dict(TextConfig, to_dict(inferred.text) | {"heads": config["transformer_heads"], "eot_token_id": 3})
        size = int(config["image_resolution"])
        mean, std = config.get("mean") or OPENAI_MEAN, config.get("std") or OPENAI_STD
        preprocess = from_dict(Preprocess, {"image_size": size, "mean": mean, "std": std, "resize_mode": "crop"})
        tokenizer = YTTMTokenizer.from_file(folder / "bpe.model", context_length=int(config["context_length"]))
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise CheckpointError(f"{folder} is not a ruCLIP folder pictext can read ({type(e).__name__}: {e})") from e
    if inferred.vision.image_size != size or text.context_length != tokenizer.context_length:
        raise CheckpointError(f"{folder}: config.json's image_resolution {size} or context_length "
                              f"{tokenizer.context_length} disagrees with the weights")  # fmt: skip
    model = _built(CLIPConfig(embed_dim=inferred.embed_dim, vision=inferred.vision, text=text,
                              activation="quick_gelu"), sd, weights)  # fmt: skip
    model.preprocess, model.tokenizer = preprocess, tokenizer
    return model
