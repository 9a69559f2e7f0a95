"""Import Sber's ruDALL-E (github.com/ai-forever/ru-dalle, `rudalle` on PyPI): its transformer onto pictext's DALL-E.

ruDALL-E is DALL-E 1 as CogView trains it: pre-LN GPT layers with CogView's sandwich layer norm, the tanh
GELU, one head over a joint vocabulary (the text ids with a pad token per position, then the image codes)
behind a second layer norm, and row, column and conv attention masks. Every one of those is a field of
`DALLEConfig`, so the imported model is pictext's own `DALLE`: its KV cache, batched guidance and reranking
apply unchanged. The state dict (`pytorch_model*.bin`) is read as data: tensors rebuilt from the zip, no
class or function of the pickle run.

`from_rudalle` takes the keyword parameters of `rudalle.dalle.model.DalleModel`, as ruDALL-E's `MODELS`
table lists them for each checkpoint, so a model is named the way its authors name it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from pictext import checkpoint
from pictext.config import from_dict
from pictext.dalle.model import DALLE, DALLEConfig, attention_mask

if TYPE_CHECKING:
    from pictext.dalle.pipeline import DALLEPipeline

# DalleModel's parameters that change nothing pictext computes at inference: dropout, the device, the mask's
# dtype, an initialiser hook.
_INERT = {"device", "embedding_dropout_prob", "attention_dropout_prob", "output_dropout_prob", "is_bool_mask",
          "init_layer_func"}  # fmt: skip
_PARAMS = {"num_layers", "vocab_size", "hidden_size", "num_attention_heads", "text_seq_length",
           "image_tokens_per_dim", "image_vocab_size", "loss_img_weight", "cogview_sandwich_layernorm",
           "cogview_pb_relax", "mlp_activation", "hf_version"} | _INERT  # fmt: skip
_ACTIVATIONS = {"gelu_jit": "gelu_tanh", "gelu": "gelu_tanh"}  # both of ruDALL-E's are the tanh approximation
CONV_KERNEL = 11  # ruDALL-E's conv mask (rudalle/dalle/image_attention.py: get_conv_mask's default)

# ruDALL-E's names for each layer's tensors -> pictext's (the prefixes transformer.layers.{i}. and blocks.{i}.)
_LAYER = {"input_layernorm": "ln_1", "attention.query_key_value": "attn.qkv", "attention.dense": "attn.proj",
          "post_attention_layernorm": "ln_2", "mlp.dense_h_to_4h": "mlp.0", "mlp.dense_4h_to_h": "mlp.2",
          "before_first_addition_layernorm": "ln_attn_out",
          "before_second_addition_layernorm": "ln_mlp_out"}  # fmt: skip
_MASKS = {"transformer.row_mask": "row", "transformer.col_mask": "column", "transformer.conv_mask": "conv"}


def layer_attention(num_layers: int) -> list[str]:
    """ruDALL-E's mask for each layer (DalleTransformer._get_layer_mask): column where (i - 1) % 4 == 0, conv
    on the last layer otherwise, row elsewhere."""
    return ["column" if (i - 1) % 4 == 0 else "conv" if i == num_layers - 1 else "row" for i in range(num_layers)]


def config_from_rudalle(**params: Any) -> DALLEConfig:
    """pictext's DALLEConfig for `DalleModel(**params)`; unknown parameters and unsupported versions raise."""
    unknown = sorted(set(params) - _PARAMS)
    if unknown:
        raise ValueError(f"unknown ruDALL-E parameters {unknown}; DalleModel takes {sorted(_PARAMS)}")
    missing = sorted({"num_layers", "vocab_size", "hidden_size", "num_attention_heads"} - set(params))
    if missing:
        raise ValueError(f"ruDALL-E parameters {missing} are required (rudalle.dalle.MODELS lists them)")
    if params.get("hf_version", "v3") != "v3":
        raise ValueError(
            f"hf_version {params['hf_version']!r}: pictext reads ruDALL-E's v3 checkpoints (Malevich, Surrealist_XL, "
            "Kandinsky); v2 ones (Malevich_v2, Emojich) put a BOS before the text and wrap the conv mask around"
        )
    activation = params.get("mlp_activation", "gelu_jit")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"mlp_activation {activation!r}: ruDALL-E has {sorted(_ACTIVATIONS)}")
    layers, text_len = params["num_layers"], params.get("text_seq_length", 128)
    kinds = layer_attention(layers)
    cycle = tuple(layer_attention(5)[:4])  # row, column, row, row
    config = from_dict(DALLEConfig, {
        "text_vocab": params["vocab_size"] - text_len,  # its vocabulary holds one pad token per text position
        "image_vocab": params.get("image_vocab_size", 16384), "text_len": text_len,
        "image_grid": params.get("image_tokens_per_dim", 32), "width": params["hidden_size"], "layers": layers,
        "heads": params["num_attention_heads"], "attention": cycle,
        "last_attention": kinds[-1] if kinds[-1] != cycle[(layers - 1) % 4] else None,
        "conv_kernel": CONV_KERNEL, "row_span": params.get("image_tokens_per_dim", 32) + 1,
        "activation": _ACTIVATIONS[activation], "sandwich_norm": bool(params.get("cogview_sandwich_layernorm")),
        "head_norm": True, "loss_img_weight": float(params.get("loss_img_weight", 7)), "pad_token_id": 0,
    })  # fmt: skip
    assert config.layer_attention() == kinds, (config.layer_attention(), kinds)
    return config


def rudalle_to_pictext(state: dict[str, torch.Tensor], config: DALLEConfig) -> dict[str, torch.Tensor]:
    """ruDALL-E's state dict in pictext's names. Its mask buffers are left out once checked equal to the masks
    pictext builds (a file whose masks differ is refused: it would load and quietly compute something else)."""
    c, out = config, {}
    vocab = c.text_vocab + c.text_len  # the joint vocabulary's text part
    for key, value in state.items():
        if key in _MASKS:
            _check_mask(key, value, config)
            continue
        if key.startswith("transformer.layers."):
            i, _, rest = key[len("transformer.layers.") :].partition(".")
            name, _, kind = rest.rpartition(".")
            if name not in _LAYER:
                raise checkpoint.CheckpointError(f"ruDALL-E tensor {key} is not one pictext knows")
            out[f"blocks.{i}.{_LAYER[name]}.{kind}"] = value
        elif key == "text_pos_embeddings.weight":
            out["text_pos"] = value[: c.text_len]  # its extra row is for v2's BOS
        elif key.startswith("to_logits.1."):  # the joint head: text rows, then image rows
            kind = key.rsplit(".", 1)[1]
            out[f"text_head.{kind}"], out[f"image_head.{kind}"] = value[:vocab], value[vocab:]
        else:
            name = _NAMES.get(key)
            if name is None:
                raise checkpoint.CheckpointError(f"ruDALL-E tensor {key} is not one pictext knows")
            out[name] = value
    return out


_NAMES = {"text_embeddings.weight": "text_embed.weight", "image_embeddings.weight": "image_embed.weight",
          "image_row_embeddings.weight": "image_row", "image_col_embeddings.weight": "image_col",
          "to_logits.0.weight": "ln_head.weight", "to_logits.0.bias": "ln_head.bias",
          "transformer.final_layernorm.weight": "ln_f.weight",
          "transformer.final_layernorm.bias": "ln_f.bias"}  # fmt: skip


def _check_mask(key: str, mask: torch.Tensor, config: DALLEConfig) -> None:
    if mask.device.type == "meta":
        return
    c = config
    ours = attention_mask(_MASKS[key], c.text_len, c.image_grid, c.conv_kernel, c.row_span)
    if mask.shape != ours.shape or not torch.equal(mask.bool(), ours):
        raise checkpoint.CheckpointError(
            f"ruDALL-E's {key} {tuple(mask.shape)} is not the {_MASKS[key]} mask pictext builds for this config; "
            "the file is not a v3 ruDALL-E of these parameters"
        )


def from_rudalle(state_dict_or_path: dict[str, torch.Tensor] | str | os.PathLike, **params: Any) -> DALLE:
    """pictext's DALLE (eval mode, float32) with ruDALL-E's weights: a state dict, or its `pytorch_model*.bin`
    read as data; `params` as `rudalle.dalle.model.DalleModel` takes them (num_layers, hidden_size,
    num_attention_heads, vocab_size, ...). `model.logits(text_ids, image_ids)` is DalleModel's forward."""
    config = config_from_rudalle(**params)
    if isinstance(state_dict_or_path, dict):
        state, where = state_dict_or_path, "the ruDALL-E state dict"
    else:
        from pictext.torchscript import read_pickle_data

        where = os.fspath(state_dict_or_path)
        data = read_pickle_data(where)
        state = data.get("state_dict", data) if isinstance(data, dict) else None
        if not isinstance(state, dict) or not state:
            raise checkpoint.CheckpointError(f"{where} holds no state dict of tensors; a ruDALL-E .bin is one")
        state = checkpoint.check_tensors({k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, where)
    return checkpoint.build_loaded(lambda: DALLE(config), rudalle_to_pictext(state, config), where)


# ---- a whole ruDALL-E: transformer, VQGAN and tokenizer ------------------------------------------------------------

MALEVICH = "rudalle/malevich"  # the registry entry whose configs a folder of ruDALL-E files is read with
CONFIG = "rudalle.json"  # in a folder: {"rudalle": DalleModel's parameters, "vqgan": the VQGAN YAML's model section}
# the first of each part's names a folder holds is read: the plain Sber VQGAN before its DWT variant, as ruDALL-E
# advises ("for stable generations you should use dwt=False"); `rudalle/malevich-dwt` fetches only the second
_FILES = {"transformer": ("pytorch_model_v3.bin", "pytorch_model.bin"),
          "vqgan": ("vqgan.gumbelf8-sber.model.ckpt", "vqgan.gumbelf8-sber-dwt.model.ckpt"),
          "tokenizer": ("bpe.model",)}  # fmt: skip


def rudalle_files(folder: str | os.PathLike) -> dict[str, Path] | None:
    """The transformer, VQGAN and tokenizer files of a ruDALL-E folder, None if it is not one: a folder
    `pictext models fetch rudalle/malevich` made (its record says where the hub put each file), or one holding
    the three files by their published names."""
    from pictext.published import recorded_paths

    folder = Path(folder)
    if not folder.is_dir():
        return None
    recorded = recorded_paths(folder)
    found = {}
    for part, names in _FILES.items():
        for name in names:
            path = recorded.get(name, folder / name)
            if path.is_file():
                found[part] = path
                break
    return found if len(found) == len(_FILES) else None


def load_rudalle(
    folder: str | os.PathLike, params: dict[str, Any] | None = None, vqgan: dict[str, Any] | None = None
) -> DALLEPipeline:
    """A drawing pipeline from a ruDALL-E folder (`rudalle_files`): the transformer (`params` as DalleModel's),
    the Sber VQGAN (`vqgan`: its taming YAML's `model` section) and the YouTokenToMe tokenizer, float32, eval
    mode. Both configs default to those of the folder's `rudalle.json`, else to Malevich's from the registry."""
    from pictext.dalle.pipeline import DALLEPipeline
    from pictext.published import entry
    from pictext.text.yttm import YTTMTokenizer
    from pictext.vqgan.convert import load_taming

    files = rudalle_files(folder)
    if files is None:
        names = ", ".join(" or ".join(n) for n in _FILES.values())
        raise checkpoint.CheckpointError(f"{folder} is not a ruDALL-E folder: it needs {names}")
    published = entry(MALEVICH)
    assert published is not None and published.config is not None, "the registry lacks rudalle/malevich"
    configs = dict(published.config)
    if (Path(folder) / CONFIG).is_file():  # another ruDALL-E than Malevich (Surrealist_XL, Kandinsky, a fine-tune)
        configs |= checkpoint.read_json_config(Path(folder) / CONFIG, "a ruDALL-E config")
    try:
        model = from_rudalle(files["transformer"], **(params or configs["rudalle"]))
    except checkpoint.CheckpointError:
        raise
    except (TypeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{folder}: its ruDALL-E parameters are wrong ({e})") from e
    image_tokenizer = load_taming(files["vqgan"], vqgan or configs["vqgan"])
    try:
        tokenizer = YTTMTokenizer.from_file(files["tokenizer"], context_length=model.config.text_len)
    except (OSError, ValueError) as e:
        raise checkpoint.CheckpointError(str(e)) from e
    return DALLEPipeline(model, tokenizer, image_tokenizer)


__all__ = ["config_from_rudalle", "from_rudalle", "layer_attention", "load_rudalle", "rudalle_files",
           "rudalle_to_pictext"]  # fmt: skip
