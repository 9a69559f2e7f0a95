"""unCLIP: the diffusion maths against closed forms, guidance, EMA, the prior, decoder and upsampler on tiny
configs, the pipeline's file, variations and interpolations."""

from __future__ import annotations

import math

import pytest
import torch

from pictext.unclip.decoder import DecoderConfig, DiffusionDecoder, export_diffusers
from pictext.unclip.diffusion import DiffusionConfig, make_scheduler, sample
from pictext.unclip.prior import DiffusionPrior, PriorConfig, TextCondition
from pictext.unclip.upsampler import DiffusionUpsampler, UpsamplerConfig


def test_linear_schedule_and_q_sample_match_their_closed_forms():
    s = make_scheduler(DiffusionConfig(timesteps=1000, schedule="linear"))
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    torch.testing.assert_close(s.alphas_cumprod.double(), abar, atol=1e-6, rtol=1e-5)
    x0, eps, t = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 10, 500, 999])
    want = abar[t].sqrt().float()[:, None] * x0 + (1 - abar[t]).sqrt().float()[:, None] * eps
    torch.testing.assert_close(s.add_noise(x0, eps, t), want, atol=1e-5, rtol=1e-5)


def test_cosine_schedule_matches_its_closed_form():
    s = make_scheduler(DiffusionConfig(timesteps=1000))

    def f(t: float) -> float:
        return math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2

    for t in (0, 100, 500, 900):  # below the 0.999 cap on beta, alpha-bar is f(t + 1) / f(0)
        assert s.alphas_cumprod[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-4)


def test_ddpm_step_is_the_posterior_mean_plus_its_noise():
    s = make_scheduler(DiffusionConfig(timesteps=100, schedule="linear"))
    s.set_timesteps(100)
    x_t, eps = torch.randn(2, 5), torch.randn(2, 5)
    t = 60
    a, abar, abar_prev = s.alphas[t], s.alphas_cumprod[t], s.alphas_cumprod[t - 1]
    beta = 1 - a
    x0 = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
    mean = (abar_prev.sqrt() * beta / (1 - abar)) * x0 + (a.sqrt() * (1 - abar_prev) / (1 - abar)) * x_t
    var = beta * (1 - abar_prev) / (1 - abar)
    z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(7))
    out = s.step(eps, t, x_t, generator=torch.Generator().manual_seed(7)).prev_sample
    torch.testing.assert_close(out, mean + var.sqrt() * z, atol=1e-5, rtol=1e-5)


def _toy_model(x, t, cond):  # a denoiser whose output depends on its input, time and condition
    return 0.1 * x + 0.01 * t.float().view(-1, *[1] * (x.ndim - 1)) / 1000 + cond.view(-1, *[1] * (x.ndim - 1))


def test_ddim_with_eta_zero_is_deterministic_and_guidance_batches_right():
    s = make_scheduler(DiffusionConfig(timesteps=100), "ddim")
    cond, null, x_T = torch.tensor([0.5, -0.2]), torch.zeros(2), torch.randn(2, 3)
    a = sample(_toy_model, s, (2, 3), cond, steps=10, generator=torch.Generator().manual_seed(1), x_T=x_T)
    b = sample(_toy_model, s, (2, 3), cond, steps=10, generator=torch.Generator().manual_seed(2), x_T=x_T)
    assert torch.equal(a, b)  # eta 0: no noise after x_T
    one = sample(_toy_model, s, (2, 3), cond, null, guidance_scale=1.0, steps=10, x_T=x_T)
    assert torch.equal(one, a)  # scale 1 is the conditional model
    zero = sample(_toy_model, s, (2, 3), cond, null, guidance_scale=0.0, steps=10, x_T=x_T)
    torch.testing.assert_close(zero, sample(_toy_model, s, (2, 3), null, steps=10, x_T=x_T))  # scale 0: uncond
    three = sample(_toy_model, s, (2, 3), cond, null, guidance_scale=3.0, steps=10, x_T=x_T)
    torch.testing.assert_close(three, sample(_toy_model, s, (2, 3), 3 * cond, steps=10, x_T=x_T))  # linear toy
    with pytest.raises(ValueError, match="guidance scale must be >= 0"):
        sample(_toy_model, s, (2, 3), cond, null, guidance_scale=-1.0)


def test_ema_update_is_the_moving_average():
    from diffusers.training_utils import EMAModel

    p = torch.nn.Parameter(torch.zeros(3))
    ema = EMAModel([p], decay=0.9)
    with torch.no_grad():
        p.add_(1.0)
    ema.step([p])  # diffusers' first step copies (decay 0)
    torch.testing.assert_close(ema.shadow_params[0], torch.ones(3))
    with torch.no_grad():
        p.add_(1.0)
    ema.step([p])
    d = min(0.9, (1 + 1) / (10 + 1))  # its decay warms up as (1 + step) / (10 + step), capped at `decay`
    torch.testing.assert_close(ema.shadow_params[0], torch.full((3,), d * 1.0 + (1 - d) * 2.0))
    for _ in range(200):
        ema.step([p])
    assert ema.cur_decay_value == 0.9


PRIOR = PriorConfig(embed_dim=16, text_len=6, width=32, heads=2, layers=2)


def _condition(n: int) -> TextCondition:
    mask = torch.ones(n, 6, dtype=torch.bool)
    mask[:, 4:] = False
    return TextCondition(torch.nn.functional.normalize(torch.randn(n, 16), dim=-1), torch.randn(n, 6, 16), mask)


def test_prior_trains_and_keeps_the_candidate_closest_to_the_text(monkeypatch):
    torch.manual_seed(0)
    prior = DiffusionPrior(PRIOR)
    cond, target = _condition(8), torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    opt = torch.optim.Adam(prior.parameters(), lr=1e-3)
    losses = []
    for step in range(60):
        loss = prior.loss(target, cond, torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) < sum(losses[:10]) * 0.7
    # two candidates per caption, known by construction: the one along the text embedding must win
    text = cond.index(torch.arange(2))
    far, near = -text.embedding, text.embedding + 0.1
    import pictext.unclip.prior as prior_module

    monkeypatch.setattr(prior_module, "sample", lambda *a, **k: torch.cat([far, near]))
    out = prior.generate(text, candidates=2)
    torch.testing.assert_close(out, torch.nn.functional.normalize(near, dim=-1))


def test_the_condition_cache_gives_the_full_forward_and_the_same_samples():
    """The condition's keys and values, computed once, stand for its positions: at any timestep the cached pass
    equals diffusers' full pass (fp32, 1e-5), padding included; so do whole guided and unguided samplings."""
    torch.manual_seed(0)
    prior = DiffusionPrior(PRIOR).eval()
    for p in prior.parameters():  # diffusers starts some at zero (the query token): make every path count
        torch.nn.init.normal_(p, std=0.2)
    cond = _condition(5)
    cond.mask[1, 1:] = False  # one caption of a single token
    x, t = torch.randn(5, 16), torch.tensor([0, 10, 500, 999, 3])
    with torch.no_grad():
        torch.testing.assert_close(prior.forward_cached(x, t, prior.condition_cache(cond)), prior(x, t, cond),
                                   rtol=1e-5, atol=1e-5)  # fmt: skip
    for guidance in (1.0, 3.0):
        g = [torch.Generator().manual_seed(1) for _ in range(2)]
        cached = prior.generate(cond, guidance, steps=8, generator=g[0])
        full = prior.generate(cond, guidance, steps=8, generator=g[1], use_cache=False)
        torch.testing.assert_close(cached, full, rtol=1e-5, atol=1e-5)


DECODER = DecoderConfig(embed_dim=16, resolution=8, channels=(32, 32), cross_dim=32, head_dim=16)


def test_decoder_learns_and_exports_as_a_diffusers_folder(tmp_path):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    decoder = DiffusionDecoder(DECODER)
    pixels = torch.rand(4, 3, 8, 8) * 2 - 1
    embedding = torch.nn.functional.normalize(torch.randn(4, 16), dim=-1)
    loss = decoder.loss(pixels, embedding, torch.Generator().manual_seed(0), drop=torch.tensor([1, 0, 0, 0]).bool())
    loss.backward()
    assert all(p.grad is not None for p in decoder.parameters() if p.requires_grad)
    decoder.eval()
    folder = export_diffusers(decoder, tmp_path / "unet")
    unet = UNet2DConditionModel.from_pretrained(folder).eval()
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([5, 500])
    e = embedding[:2] * decoder.scale
    tokens = decoder.to_tokens(e).view(2, 4, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            unet(x, t, encoder_hidden_states=tokens, class_labels=e).sample, decoder(x, t, embedding[:2])
        )
    out = decoder.generate(embedding[:2], steps=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 8, 8) and out.abs().max() <= 1


UPSAMPLER = UpsamplerConfig(low=8, resolution=16, channels=(32, 32))


def test_upsampler_reads_the_small_picture_and_draws_twice_its_size():
    torch.manual_seed(0)
    up = DiffusionUpsampler(UPSAMPLER)
    small = torch.rand(2, 3, 8, 8) * 2 - 1
    big = small.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)  # each pixel a 2x2 block
    torch.testing.assert_close(up.shrink(big), small)
    flat = torch.full((2, 3, 8, 8), 0.3)  # a blur keeps a flat picture flat; only the noise changes it
    clean = DiffusionUpsampler(UpsamplerConfig(low=8, resolution=16, channels=(32, 32), max_noise=0.0))
    torch.testing.assert_close(clean.corrupt(flat, torch.Generator().manual_seed(1)), flat)
    noisy = up.corrupt(flat, torch.Generator().manual_seed(1))
    torch.testing.assert_close(noisy, up.corrupt(flat, torch.Generator().manual_seed(1)))  # seeded
    assert 0 < (noisy - flat).abs().max() < 0.5
    loss = up.loss(big, torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is not None for p in up.parameters() if p.requires_grad)
    up.eval()
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([3, 700])
    with torch.no_grad():  # the small picture is what conditions it
        assert not torch.allclose(up(x, t, small), up(x, t, -small))
    out = up.generate(small, steps=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 16, 16) and out.abs().max() <= 1
    with pytest.raises(ValueError, match="reads 8x8 pictures"):
        up.generate(torch.zeros(1, 3, 16, 16), steps=1)
    with pytest.raises(ValueError, match="draws larger than it reads"):
        UpsamplerConfig(low=32, resolution=32)


def test_a_run_folder_of_another_parametrisation_is_refused_not_continued(tmp_path):
    """Same weight shapes, other prediction type: loading alone would not notice; resume must."""
    import dataclasses

    from PIL import Image

    from pictext.training import ResumeError
    from pictext.unclip.train import Embedded, UnclipTrainConfig, train_decoder

    data = [(Image.new("RGB", (8, 8), (200, 30, 30)), "red")] * 4
    embedded = Embedded(torch.nn.functional.normalize(torch.randn(4, 16), dim=-1), None, ["red"] * 4)  # type: ignore[arg-type]
    cfg = UnclipTrainConfig(steps=2, batch_size=2, precision="fp32", checkpoint_every=1)
    train_decoder(DiffusionDecoder(DECODER), data, embedded, cfg, tmp_path)
    longer = dataclasses.replace(cfg, steps=3)  # the same config: the run goes on from step 2
    assert len(train_decoder(DiffusionDecoder(DECODER), data, embedded, longer, tmp_path)) == 1
    other = dataclasses.replace(DECODER, diffusion=DiffusionConfig(prediction="epsilon", clip_sample=True))
    with pytest.raises(ResumeError, match=r"state.pt is a run of another model config \(differs in \['diffusion'\]\)"):
        train_decoder(DiffusionDecoder(other), data, embedded, dataclasses.replace(cfg, steps=4), tmp_path)


def test_slerp_stays_on_the_sphere_and_hits_its_ends():
    from pictext.unclip.pipeline import slerp

    a, b = torch.nn.functional.normalize(torch.randn(2, 16), dim=-1)
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b, atol=1e-5, rtol=1e-5)
    for w in (0.25, 0.5, 0.75):
        assert slerp(a, b, w).norm().item() == pytest.approx(1.0, abs=1e-5)


def test_pipeline_file_variations_interpolations_and_a_foreign_clip(tiny_model_path, other_model_path, tmp_path):
    from pictext.api import load
    from pictext.checkpoint import CheckpointError
    from pictext.unclip.io import load_unclip, save_unclip
    from pictext.unclip.pipeline import UnclipPipeline
    from pictext.unclip.train import text_condition

    clip = load(str(tiny_model_path), precision="fp32")
    E, T = clip.config.embed_dim, clip.config.text.context_length
    torch.manual_seed(0)
    prior = DiffusionPrior(PriorConfig(embed_dim=E, text_len=T, width=32, heads=2, layers=1)).eval()
    decoder = DiffusionDecoder(DecoderConfig(embed_dim=E, resolution=8, channels=(32, 32), cross_dim=32, head_dim=16))
    cond = text_condition(clip, ["a red circle", "a blue square"])
    assert cond.tokens.shape == (2, T, E) and cond.mask[:, 0].all()
    path = save_unclip(prior, decoder.eval(), str(tiny_model_path), clip, tmp_path / "unclip.safetensors")
    with pytest.raises(CheckpointError, match="is not a model name"):  # a path the file names is never opened
        load_unclip(path)
    pipeline = load_unclip(path, clip=str(tiny_model_path))
    images = pipeline.generate("a red circle", n=2, steps=2, seed=1)
    assert [im.size for im in images] == [(8, 8), (8, 8)]
    assert [a.tobytes() for a in images] == [
        a.tobytes() for a in pipeline.generate("a red circle", n=2, steps=2, seed=1)
    ]
    source = images[0].resize((32, 32))
    assert len(pipeline.vary(source, n=3, steps=2)) == 3
    line = pipeline.interpolate(source, images[1].resize((32, 32)), n=4, steps=2)
    assert len(line) == 4
    with pytest.raises(ValueError, match="prompt is empty"):
        pipeline.generate(" ")
    with pytest.raises(CheckpointError, match="the CLIP given is another"):
        load_unclip(path, clip=load(str(other_model_path)))
    up = save_unclip(prior, decoder, str(tiny_model_path), clip, tmp_path / "up.safetensors",
                     upsampler=DiffusionUpsampler(UPSAMPLER).eval())  # fmt: skip
    pipeline = load_unclip(up, clip=clip)
    assert [im.size for im in pipeline.generate("a red circle", n=2, steps=2)] == [(16, 16), (16, 16)]
    assert [im.size for im in pipeline.generate("a red circle", n=1, steps=2, upsample=False)] == [(8, 8)]
    assert [im.size for im in pipeline.vary(source, n=1, steps=2)] == [(16, 16)]
    assert [im.size for im in pipeline.interpolate(source, source, n=2, steps=2)] == [(16, 16), (16, 16)]
    ends = pipeline.interpolate(source, source, n=2, steps=2)  # one embedding, one noise: the same picture twice
    assert ends[0].tobytes() == ends[1].tobytes()
    with pytest.raises(ValueError, match="the upsampler reads 16 px pictures, the decoder draws 8 px"):
        UnclipPipeline(clip, prior, decoder, DiffusionUpsampler(UpsamplerConfig(low=16, resolution=32)))


def test_cli_trains_both_stages_then_generates_varies_and_interpolates(tiny_model_path, tmp_path, capsys):
    from PIL import Image

    from pictext.cli import main
    from pictext.data.shapes import ShapesWorld

    data = tmp_path / "pairs"
    data.mkdir()
    for i in range(6):
        image, caption = ShapesWorld(size=32, seed=0)[i]
        image.save(data / f"{i}.png")
        (data / f"{i}.txt").write_text(caption)
    out = tmp_path / "unclip.safetensors"
    common = [
        "--data",
        str(data),
        "--clip",
        str(tiny_model_path),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--out",
        str(out),
    ]
    assert main(["train", "unclip-prior", *common]) == 0
    assert "train the decoder too" in capsys.readouterr().out
    assert main(["generate", "a red circle", "--method", "unclip", "--unclip", str(out)]) == 2
    assert "has no decoder yet" in capsys.readouterr().err
    assert main(["train", "unclip-decoder", *common]) == 0
    gen, model = tmp_path / "gen", ["--unclip", str(out), "--clip", str(tiny_model_path)]
    # the file names its CLIP by the path it was trained with: opened only when the user passes it again
    assert main(["generate", "a red circle", "--method", "unclip", "--unclip", str(out), "--out", str(gen)]) == 2
    assert "is not a model name" in capsys.readouterr().err and not gen.exists()
    argv = ["generate", "a red circle", "--method", "unclip", *model, "--samples", "2", "--steps", "2",
            "--out", str(gen)]  # fmt: skip
    assert main(argv) == 0
    assert sorted(p.name for p in gen.glob("*.png")) == ["a-red-circle-0-2.png", "a-red-circle-0-sheet.png",
                                                          "a-red-circle-0.png"]  # fmt: skip
    assert Image.open(gen / "a-red-circle-0.png").size == (32, 32)
    assert main(["vary", str(data / "0.png"), "-n", "2", "--steps", "2", *model, "--out", str(gen)]) == 0
    assert len(list((gen / "0-variations-0-frames").glob("*.png"))) == 2
    argv = ["interpolate", str(data / "0.png"), str(data / "1.png"), "-n", "3", "--steps", "2", *model,
            "--out", str(gen)]  # fmt: skip
    assert main(argv) == 0 and (gen / "0-to-1-0.gif").is_file()
    for bad, message in ((["--samples", "0"], "--samples must be between 1 and 1024, got 0"),
                         (["--keep", "2"], "--keep: not options"),
                         (["--guidance", "-1"], "--guidance must be between 0 and 100, got -1"),
                         (["--eta", "1.5"], "--eta must be between 0 and 1, got 1.5")):  # fmt: skip
        bad_run = ["generate", "a red circle", "--method", "unclip", *model, "--out", str(tmp_path / "x")]
        assert main([*bad_run, *bad]) == 2
        assert message in capsys.readouterr().err
    assert main(["interpolate", str(data / "0.png"), str(data / "1.png"), "-n", "1", *model]) == 2
    assert "-n must be between 2 and 1024, got 1" in capsys.readouterr().err
    assert main(["vary", str(data / "0.png"), "--eta", "-0.1", *model, "--out", str(tmp_path / "y")]) == 2
    assert "--eta must be between 0 and 1, got -0.1" in capsys.readouterr().err
    assert main(["vary", str(data / "0.png"), "--guidance", "nan", *model, "--out", str(tmp_path / "y")]) == 2
    assert "--guidance must be a finite number, got 'nan'" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
    # the optional upsampler joins the same file: 32 px from the decoder, 64 px out
    assert main(["train", "unclip-upsampler", *common]) == 0
    assert main(["generate", "a red circle", "--method", "unclip", *model, "--samples", "1", "--steps",
                 "2", "--out", str(tmp_path / "up")]) == 0  # fmt: skip
    assert Image.open(tmp_path / "up" / "a-red-circle-0.png").size == (64, 64)
    assert main(["vary", str(data / "0.png"), "-n", "1", "--steps", "2", *model, "--no-upsample",
                 "--out", str(tmp_path / "small")]) == 0  # fmt: skip
    assert Image.open(next((tmp_path / "small").glob("*-frames/*.png"))).size == (32, 32)
    assert main(["train", "unclip-decoder", *common[:2], "--clip", "shapes", *common[4:]]) == 2
    assert "holds parts trained in the space of" in capsys.readouterr().err


def test_the_recipe_trains_on_shapes_and_emoji_in_a_clip_that_knows_both(tmp_path):
    """The default unCLIP's data: the shapes world beside the built emoji set, each emoji once; without emoji
    (emoji_repeats 0) the shapes world alone."""
    import dataclasses

    from pictext.clip.recipe import RECIPES
    from pictext.data.emoji import build_emoji
    from pictext.unclip.recipe import UnclipRecipe, recipe_data

    from helpers import fake_tarball

    recipe = dataclasses.replace(UnclipRecipe(), shapes_length=50)
    assert RECIPES[recipe.clip].data.startswith("open-emoji")  # its CLIP trained on emoji too
    counts = build_emoji(tmp_path / "data" / "emoji", fake_tarball(tmp_path / "e.tgz"))
    data = recipe_data(recipe, home=tmp_path)
    assert len(data) == 50 + counts["train"]
    image, caption = data[len(data) - 1]  # the last pair is an emoji, at the set's size
    assert image.size == (64, 64) and caption and "circle" not in caption
    assert data[0][0].size == (recipe.resolution, recipe.resolution)
    assert len(recipe_data(dataclasses.replace(recipe, emoji_repeats=0))) == 50
