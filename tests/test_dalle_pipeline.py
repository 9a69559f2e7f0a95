"""DALL-E end to end on tiny models: the recipe's training (resumable), the file, drawing, reranking, the
`generate --method dalle` command and its bad input."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from pictext.dalle.io import DALLEPipeline, TokenizerMismatchError, load_dalle, save_dalle
from pictext.dalle.recipe import DALLERecipe
from pictext.dalle.recipe import build as train_pipeline
from pictext.dalle.train import DALLETrainConfig
from pictext.data.shapes import ShapesWorld
from pictext.generate import GenerationError, generate
from pictext.generate.rerank import rerank
from pictext.vqgan import VQGAN, VQGANConfig
from pictext.vqgan.io import save_vqgan

TINY_VQGAN = VQGANConfig(
    resolution=16, ch=32, ch_mult=(1, 1), num_res_blocks=1, attn_resolutions=(), z_channels=16, embed_dim=8,
    n_embed=32,
)  # fmt: skip
TINY = DALLERecipe(
    vqgan=TINY_VQGAN, vqgan_steps=2, width=32, layers=2, heads=2, text_len=12, text_vocab=300,
    train=DALLETrainConfig(steps=6, batch_size=8, checkpoint_every=3, warmup=2, precision="fp32"),
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_model(tiny_model_path):
    from pictext.clip.io import load_clip

    return load_clip(tiny_model_path)


def _data():
    return ShapesWorld(size=16, length=40, seed=0)


@pytest.fixture(scope="module")
def tiny_dalle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dalle")
    pipeline = train_pipeline(TINY, _data(), out=folder / "dalle.safetensors", run_dir=folder / "run")
    return pipeline, folder / "dalle.safetensors"


def test_the_recipe_trains_its_tokenizer_then_the_transformer_and_saves_both(tiny_dalle):
    pipeline, path = tiny_dalle
    assert pipeline.model.config.image_vocab == 32 and pipeline.model.config.image_grid == 8
    assert (path.parent / "run" / "vqgan.safetensors").is_file()
    assert list((path.parent / "run").glob("tokens-*.pt"))  # image tokens computed once and cached
    loaded = load_dalle(path)
    text = loaded.text_tokenizer("a red circle", context_length=12)
    assert torch.equal(text, pipeline.text_tokenizer("a red circle", context_length=12))
    image = torch.randint(0, 32, (1, 64))
    with torch.no_grad():  # fp16 in the file: the same model up to half precision
        a = pipeline.model(text, image).loss
        b = loaded.model(text, image).loss
    assert abs(a.item() - b.item()) < 1e-2


def test_resume_continues_exactly(tmp_path):
    data = _data()
    vqgan = VQGAN(TINY_VQGAN)
    whole = train_pipeline(TINY, data, vqgan=vqgan, run_dir=tmp_path / "a")
    half = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, steps=3))
    train_pipeline(half, data, vqgan=vqgan, run_dir=tmp_path / "b")
    resumed = train_pipeline(TINY, data, vqgan=vqgan, run_dir=tmp_path / "b")
    for (name, p), q in zip(whole.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)


def test_draw_is_seeded_and_priming_keeps_the_top(tiny_dalle):
    pipeline, _ = tiny_dalle
    a = pipeline.draw("a red circle", 3, seed=1)
    b = pipeline.draw("a red circle", 3, seed=1)
    assert [np.asarray(x).tobytes() for x in a] == [np.asarray(x).tobytes() for x in b]
    assert all(x.size == (16, 16) for x in a)
    source = _data()[0][0]
    primed = pipeline.draw("a red circle", 2, seed=0, prime=source, prime_rows=2)
    codes = pipeline.image_tokenizer.encode(
        torch.from_numpy(np.asarray(source, np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    ).indices
    for image in primed:
        again = pipeline.image_tokenizer.encode(
            torch.from_numpy(np.asarray(image, np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
        ).indices
        assert (again[0, :2] == codes[0, :2]).float().mean() > 0.5  # decoded then re-encoded: mostly the same


def test_rerank_keeps_the_best_by_the_clips_scores(tiny_model, tiny_dalle):
    pipeline, _ = tiny_dalle
    images = pipeline.draw("a red circle", 5, seed=0)
    ranked = rerank(images, "a red circle", tiny_model, keep=2)
    assert ranked.scores == sorted(ranked.all_scores, reverse=True)[:2]
    assert [ranked.all_scores[i] for i in ranked.indices] == ranked.scores
    with pytest.raises(ValueError, match="keep must be between 1 and the number of samples"):
        rerank(images, "a red circle", tiny_model, keep=6)


def test_rerank_by_several_clips_sums_their_cosines(tiny_model, tiny_dalle):
    pipeline, _ = tiny_dalle
    images = pipeline.draw("a red circle", 5, seed=0)
    other = copy.deepcopy(tiny_model)
    with torch.no_grad():
        other.visual.proj.mul_(-1.0)  # another CLIP: its every cosine negated, so the sum is zero
    one = rerank(images, "a red circle", tiny_model, keep=5)
    both = rerank(images, "a red circle", [tiny_model, tiny_model], keep=5)
    assert both.all_scores == pytest.approx([2 * s for s in one.all_scores], abs=1e-6)
    assert both.indices == one.indices
    cancelled = rerank(images, "a red circle", [tiny_model, other], keep=5)
    assert cancelled.all_scores == pytest.approx([0.0] * 5, abs=1e-5)
    with pytest.raises(ValueError, match="at least one CLIP"):
        rerank(images, "a red circle", [], keep=1)


def test_generate_dalle_through_the_api(tiny_model, tiny_dalle):
    pipeline, _ = tiny_dalle
    seen = []
    result = generate("a red circle", method="dalle", dalle=pipeline, clip=tiny_model, samples=4, keep=2,
                      guidance_scale=2.0, top_k=8, seed=3,
                      callback=lambda step, image: image is None or seen.append(step))  # fmt: skip
    assert len(result.samples) == 2 and result.scores == sorted(result.scores, reverse=True)
    assert result.clip_score == result.scores[0] and len(result.all_scores) == 4
    assert [s.clip_score for s in seen] == result.scores
    with pytest.raises(GenerationError, match="keep must be between 1 and samples"):
        generate("a red circle", method="dalle", dalle=pipeline, clip=tiny_model, samples=2, keep=3)
    with pytest.raises(GenerationError, match="guidance_scale must be between 0 and 100"):
        generate("a red circle", method="dalle", dalle=pipeline, clip=tiny_model, guidance_scale=-1)
    with pytest.raises(GenerationError, match="prompt is empty"):
        generate(" ", method="dalle", dalle=pipeline, clip=tiny_model)
    with pytest.raises(GenerationError, match="unknown settings"):
        generate("a red circle", method="dalle", dalle=pipeline, clip=tiny_model, steps=3)
    with pytest.raises(GenerationError, match="at least one CLIP"):
        generate("a red circle", method="dalle", dalle=pipeline, clip=[])


def test_a_tokenizer_that_does_not_match_is_refused(tiny_dalle):
    pipeline, _ = tiny_dalle
    other = VQGAN(dataclasses.replace(TINY_VQGAN, n_embed=64))
    with pytest.raises(TokenizerMismatchError, match="64 codes on a 8x8 grid, but the transformer was trained on 32"):
        DALLEPipeline(pipeline.model, pipeline.text_tokenizer, other)


def test_cli_generate_dalle_writes_ranked_pictures_and_a_sheet(
    tiny_model_path, other_model_path, tiny_dalle, tmp_path, capsys
):
    from pictext.cli import main

    _, path = tiny_dalle
    out = tmp_path / "out"
    argv = ["generate", "a red circle", "--method", "dalle", "--dalle", str(path), "--clip", str(tiny_model_path),
            "--samples", "4", "--keep", "2", "--seed", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    want = [f"a-red-circle-1{rank}.{ext}" for rank in ("", "-2", "-sheet") for ext in ("png", "json")]
    assert names == sorted(want)
    first = json.loads((out / "a-red-circle-1.json").read_text())
    second = json.loads((out / "a-red-circle-1-2.json").read_text())
    assert first["rank"] == 1 and first["clip_score"] >= second["clip_score"]
    assert first["guidance_scale"] == 3.0 and first["samples"] == 4 and first["method"] == "dalle"
    assert first["clip"] == [str(tiny_model_path)]
    assert first["caption"] == "a red circle" and first["guides"] == [["a circle", 0.5]] and first["shape_prompt"]
    long = " ".join(["a red circle"] * 10)
    assert main([*argv[:1], long, *argv[2:]]) == 0
    assert "longer than the model's 12 text tokens" in capsys.readouterr().err
    both = [*argv[:-1], str(tmp_path / "both"), "--clip", str(other_model_path)]  # two CLIPs rerank together
    assert main(both) == 0
    assert json.loads((tmp_path / "both" / "a-red-circle-1.json").read_text())["clip"] == [
        str(tiny_model_path), str(other_model_path)]  # fmt: skip
    assert f"clip {tiny_model_path} + {other_model_path})" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--keep", "5"], "keep must be between 1 and samples (4)"),
        (["--guidance", "-1"], "--guidance must be between 0 and 100, got -1"),
        (["--top-p", "2"], "--top-p must be between 1e-06 and 1, got 2"),
        (["--steps", "3"], "--steps: not options of --method dalle"),
        (["--dalle", "{clip}"], "'clip' checkpoint, not a 'dalle' model"),
    ],
)
def test_cli_bad_input_is_named_and_nothing_is_written(tiny_model_path, tiny_dalle, tmp_path, capsys, extra, message):
    from pictext.cli import main

    _, path = tiny_dalle
    extra = [str(tiny_model_path) if a == "{clip}" else a for a in extra]
    argv = ["generate", "a red circle", "--method", "dalle", "--clip", str(tiny_model_path), "--samples", "4",
            "--out", str(tmp_path / "out")]  # fmt: skip
    if "--dalle" not in extra:
        argv += ["--dalle", str(path)]
    assert main([*argv, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["generate", "  ", "--method", "dalle", "--dalle", str(path)]) == 2
    assert "prompt is empty" in capsys.readouterr().err


def test_a_prompt_splits_into_the_caption_and_its_guides():
    from pictext.generate.dalle import DALLESettings, guides_for

    assert guides_for("a small blue cross") == ("a small blue cross", [("a cross", 0.5)])  # a shapes caption
    assert guides_for("a small blue cross", DALLESettings(shape_prompt=False)) == ("a small blue cross", [])
    assert guides_for("a grinning face") == ("a grinning face", [])  # not the shapes world
    assert guides_for("a red circle left of a blue square") == ("a red circle left of a blue square", [])
    assert guides_for("a blue cross:2 | a cross | red:-1") == ("a blue cross", [("a cross", 0.5), ("red", -0.5)])
    with pytest.raises(GenerationError, match="its weight must be positive, got -1"):
        guides_for("a blue cross:-1 | a cross")
    with pytest.raises(GenerationError, match="must be a number"):
        guides_for("a blue cross | a cross:x1")


def test_generate_guides_a_shapes_caption_by_its_shape_too(tiny_model, tiny_dalle, monkeypatch):
    pipeline, _ = tiny_dalle
    calls = []
    draw = pipeline.draw
    monkeypatch.setattr(pipeline, "draw", lambda *a, **k: calls.append(a) or draw(*a, **k))
    generate("a small red circle", method="dalle", dalle=pipeline, clip=tiny_model, samples=2)
    generate("a small red circle", method="dalle", dalle=pipeline, clip=tiny_model, samples=2, shape_prompt=False)
    generate("a red circle | red:-0.5", method="dalle", dalle=pipeline, clip=tiny_model, samples=2)
    assert [(c[0], c[-1]) for c in calls] == [("a small red circle", [("a circle", 0.5)]),
                                             ("a small red circle", []), ("a red circle", [("red", -0.5)])]  # fmt: skip


def test_cli_dalle_options_are_refused_for_vqgan_clip(tmp_path, capsys):
    from pictext.cli import main

    assert main(["generate", "a red circle", "--samples", "4", "--out", str(tmp_path)]) == 2
    assert "--samples: not options of --method vqgan-clip" in capsys.readouterr().err
    assert main(["generate", "a red circle", "--no-shape-prompt", "--out", str(tmp_path)]) == 2
    assert "--no-shape-prompt: not options of --method vqgan-clip" in capsys.readouterr().err


def test_save_load_roundtrip_is_exact_in_float32(tiny_dalle, tmp_path):
    pipeline, _ = tiny_dalle
    path = save_dalle(pipeline, tmp_path / "full.safetensors")
    loaded = load_dalle(path)
    for (name, a), b in zip(pipeline.model.state_dict().items(), loaded.model.state_dict().values()):
        assert torch.equal(a, b), name
    save_vqgan(pipeline.image_tokenizer, tmp_path / "v.safetensors")  # the embedded tokenizer is a plain VQGAN
    from pictext.vqgan.io import load_vqgan

    inside = load_vqgan(path)  # a DALL-E file serves as a VQGAN (for VQGAN+CLIP): its tokenizer, nothing else
    assert isinstance(inside, VQGAN) and not inside.training
    for (name, a), b in zip(pipeline.image_tokenizer.state_dict().items(), inside.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_dvae_is_an_image_tokenizer_too(tmp_path):
    """A dVAE tokenizes for `pictext train dalle` (native file), the trained file carries it, and OpenAI-format
    pickles (a folder with encoder.pkl and decoder.pkl) load as one."""
    import dall_e

    from pictext.cli import main
    from pictext.dalle.dvae import DVAE, DVAEConfig
    from pictext.dalle.io import load_image_tokenizer, save_dvae

    torch.manual_seed(0)
    dvae = DVAE(DVAEConfig(vocab_size=64, n_hid=16, n_blk_per_group=1, n_init=16, resolution=32))
    save_dvae(dvae, tmp_path / "dvae.safetensors")
    data = tmp_path / "pairs"
    data.mkdir()
    for i in range(6):
        image, caption = ShapesWorld(size=32, seed=0)[i]
        image.save(data / f"{i}.png")
        (data / f"{i}.txt").write_text(caption)
    out = tmp_path / "dalle-dvae.safetensors"
    argv = ["train", "dalle", "--data", str(data), "--image-tokenizer", f"dvae:{tmp_path / 'dvae.safetensors'}",
            "--steps", "2", "--batch-size", "4", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    pipeline = load_dalle(out)
    assert isinstance(pipeline.image_tokenizer, DVAE) and pipeline.model.config.image_vocab == 64
    assert pipeline.model.config.image_grid == 4 and pipeline.draw("a red circle", 1)[0].size == (32, 32)
    assert main([*argv[:4], "--image-tokenizer", "dvae", *argv[6:]]) == 2
    from pictext.checkpoint import CheckpointError
    from pictext.vqgan.io import load_vqgan

    with pytest.raises(CheckpointError, match="image tokenizer is a dVAE, not a VQGAN"):
        load_vqgan(out)

    folder = tmp_path / "openai-dvae"
    folder.mkdir()
    torch.save(dall_e.Encoder(vocab_size=512, n_hid=64, n_blk_per_group=1), folder / "encoder.pkl")
    torch.save(dall_e.Decoder(vocab_size=512, n_hid=64, n_blk_per_group=1, n_init=32), folder / "decoder.pkl")
    assert isinstance(load_image_tokenizer(f"dvae:{folder}"), DVAE)


def test_image_tokenizer_specs_are_checked():
    from pictext.dalle.io import load_image_tokenizer

    with pytest.raises(ValueError, match="vqgan:MODEL or dvae:MODEL"):
        load_image_tokenizer("taming:x")
    with pytest.raises(FileNotFoundError, match="neither a file nor a model"):
        load_image_tokenizer("vqgan:no-such-model")


def test_unknown_words_is_a_share_of_dalles_captions(capsys):
    from pictext.cli import main

    for family in ("vqgan", "clip", "unclip-prior"):
        assert main(["train", family, "--unknown-words", "0.2"]) == 2
        assert "--unknown-words" in capsys.readouterr().err
    assert main(["train", "dalle", "--unknown-words", "1.5"]) == 2
    assert "from 0 to 1; got 1.5" in capsys.readouterr().err
