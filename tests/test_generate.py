"""VQGAN+CLIP generation on tiny random models: prompts, determinism, the optimization doing its job, the
outputs, and bad input named before anything is written."""

from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image

from pictext.clip.io import load_clip
from pictext.generate import GenerationError, Prompt, generate, parse_prompts
from pictext.generate.vqgan_clip import VQGANCLIPSettings, clamp_with_grad, make_cutouts, spherical_loss
from pictext.vqgan import VQGAN, VQGANConfig
from pictext.vqgan.io import save_vqgan

TINY_VQGAN = VQGANConfig(
    resolution=32, ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), z_channels=32, embed_dim=16,
    n_embed=64,
)  # fmt: skip
FAST = dict(steps=4, size=32, cutouts=4, frame_every=2)


@pytest.fixture(scope="module")
def tiny_vqgan_path(tmp_path_factory):
    torch.manual_seed(0)
    return save_vqgan(VQGAN(TINY_VQGAN), tmp_path_factory.mktemp("vqgan") / "tiny-vqgan.safetensors")


def test_prompts_with_weights_negatives_and_colons():
    assert parse_prompts("a red apple:1 | green:-0.5") == [Prompt(1.0, "a red apple"), Prompt(-0.5, "green")]
    assert parse_prompts("a circle") == [Prompt(1.0, "a circle")]
    assert parse_prompts("time: half past two") == [Prompt(1.0, "time: half past two")]  # a colon in the text
    for bad, message in (("", "empty"), ("a | ", "empty"), ("red:abc", "must be a number"), ("red:-1", "positive")):
        with pytest.raises(GenerationError, match=message):
            parse_prompts(bad)


def test_spherical_loss_and_clamp_on_known_values():
    e = torch.eye(3)
    assert spherical_loss(e[:1], e[:1], torch.tensor([1.0])).item() == pytest.approx(0.0, abs=1e-6)
    # orthogonal unit vectors: chord sqrt(2), angle pi/2, loss 2 * (pi/4)^2
    assert spherical_loss(e[:1], e[1:2], torch.tensor([1.0])).item() == pytest.approx(2 * (torch.pi / 4) ** 2)
    assert spherical_loss(e[:1], e[1:2], torch.tensor([-0.5])).item() == pytest.approx(-((torch.pi / 4) ** 2))
    x = torch.tensor([-0.5, 0.5, 1.5], requires_grad=True)
    y = clamp_with_grad(x, 0.0, 1.0)
    assert y.tolist() == [0.0, 0.5, 1.0]
    (y * torch.tensor([-1.0, 1.0, 1.0])).sum().backward()  # descent on x: up, down, down
    assert x.grad.tolist() == [-1.0, 1.0, 1.0]  # every direction that leads back inside passes
    x.grad = None
    clamp_with_grad(x, 0.0, 1.0).sum().backward()  # descent pushes all down: x[0] would leave further
    assert x.grad.tolist() == [0.0, 1.0, 1.0]


def test_no_cutout_is_smaller_than_the_clips_input():
    g = torch.Generator().manual_seed(0)
    config = VQGANCLIPSettings(cutouts=8, augment=False)
    small = torch.rand(1, 3, 32, 32, generator=g)  # no larger than the input: always seen whole
    assert torch.equal(make_cutouts(small, 32, config, g), small.expand(8, -1, -1, -1))
    large = torch.zeros(1, 3, 64, 64)
    large[..., :16, :16] = 1.0  # a corner a 32 px cutout may hold whole; smaller cutouts would magnify it
    cuts = make_cutouts(large, 32, VQGANCLIPSettings(cutouts=64, augment=False), g)
    assert cuts.shape == (64, 3, 32, 32)
    assert cuts.mean(dim=(1, 2, 3)).max().item() <= 0.25 + 1e-6  # the corner fills at most a quarter of any cut


def test_same_seed_same_bytes_and_another_seed_differs(tiny_model_path, tiny_vqgan_path, tmp_path):
    from pictext.cli import main

    def run(seed, out):
        argv = ["generate", "a red circle", "--clip", str(tiny_model_path), "--vqgan", str(tiny_vqgan_path)]
        argv += ["--steps", "3", "--size", "32", "--cutouts", "4", "--seed", str(seed), "--out", str(out)]
        assert main(argv) == 0
        return (out / f"a-red-circle-{seed}.png").read_bytes()

    assert run(3, tmp_path / "a") == run(3, tmp_path / "b")
    assert run(4, tmp_path / "c") != run(3, tmp_path / "a")


def test_the_optimization_moves_the_picture_towards_the_prompt(tiny_model_path):
    clip = load_clip(tiny_model_path)
    result = generate("a red circle", clip=clip, drawer="pixel", steps=30, size=32, cutouts=8, lr=0.1,
                      augment=False, seed=0)  # fmt: skip
    losses = [s.loss for s in result.steps]
    assert sum(losses[-3:]) < sum(losses[:3]) and result.clip_score > result.steps[0].clip_score
    assert result.image.size == (32, 32) and len(result.frames) == 4  # frames at 0, 10, 20 and the last step


def test_russian_and_shapes_captions_are_drawn_by_the_unclip_that_reads_russian():
    from pictext.generate.unclip import UnclipGenerator

    defaults = UnclipGenerator.defaults
    assert defaults("красный круг") == defaults("a small red circle") == {"unclip": "unclip-ru"}
    assert defaults("грустный кот") == {"unclip": "unclip-ru"}  # Russian: the default CLIP cannot read it at all
    assert defaults("a smiling cat") == defaults(None) == {"unclip": "unclip"}  # emoji; variations


def test_shapes_prompts_default_to_the_shapes_vqgan_and_the_size_to_the_vqgans_own(tiny_model_path, tiny_vqgan_path):
    from pictext.generate.vqgan_clip import VQGANCLIPGenerator

    defaults = VQGANCLIPGenerator.defaults
    assert defaults("a small red circle")["vqgan"] == "dalle" and defaults("a photo of a cat")["vqgan"] == "vqgan"
    side = TINY_VQGAN.resolution  # 32; the pixel drawer draws 64
    result = generate("a blue square", clip=load_clip(tiny_model_path), vqgan=tiny_vqgan_path, steps=1, cutouts=2)
    assert result.image.size == (side, side)
    pixel = generate("a blue square", clip=load_clip(tiny_model_path), drawer="pixel", steps=1, cutouts=2)
    assert pixel.image.size == (64, 64)


def test_vqgan_drawer_inits_and_callback_can_stop(tiny_model_path, tiny_vqgan_path):
    clip = load_clip(tiny_model_path)
    seen = []
    for init in ("random", "noise"):
        result = generate("a blue square", clip=clip, vqgan=tiny_vqgan_path, init=init, **FAST)
        assert len(result.steps) == 4 and not result.stopped_early
    picture = Image.new("RGB", (40, 30), (200, 30, 30))
    stopped = generate("a blue square | red:-0.5", clip=[clip, clip], vqgan=tiny_vqgan_path, init="image",
                       init_image=picture, callback=lambda step, frame: seen.append(frame.size) or step.step < 1,
                       **FAST)  # fmt: skip
    assert stopped.stopped_early and len(stopped.steps) == 2 and seen == [(32, 32), (32, 32)]
    assert set(stopped.steps[0].terms) == {"clip0", "clip1"}
    with pytest.raises(GenerationError, match="unknown settings"):
        generate("a red circle", clip=clip, vqgan=tiny_vqgan_path, temperature=2)


def test_outputs_carry_their_settings(tiny_model_path, tiny_vqgan_path, tmp_path, capsys):
    from pictext.cli import main

    argv = ["generate", "a green cross:1 | blue:-0.3", "--clip", str(tiny_model_path), "--vqgan", str(tiny_vqgan_path),
            "--steps", "3", "--size", "30", "--cutouts", "4", "--seed", "5", "--out", str(tmp_path / "out"),
            "--frame-every", "1", "--smoothness", "0.1"]  # fmt: skip
    assert main(argv) == 0
    assert "CLIP score" in capsys.readouterr().out
    name = tmp_path / "out" / "a-green-cross-1-blue-0-3-5"
    png = Image.open(f"{name}.png")
    settings = json.loads(png.text["pictext"])
    assert png.text["prompt"] == "a green cross:1 | blue:-0.3" and png.text["seed"] == "5"
    assert settings == json.loads(name.with_suffix(".json").read_text())
    assert settings["steps"] == 3 and settings["size"] == [30, 30] and settings["smoothness"] == 0.1
    assert len(list((tmp_path / "out" / f"{name.name}-frames").iterdir())) == 3
    assert Image.open(f"{name}.gif").n_frames == 3
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no staging left behind


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--steps", "0"], "--steps must be at least 1"),
        (["--size", "abc"], "--size must be N or WxH"),
        (["--init", "{text}"], "not a readable image"),
        (["--vqgan", "{clip}"], "'clip' checkpoint, not a 'vqgan' model"),
        (["--clip", "{vqgan}"], "is a vqgan model, not a CLIP"),
        (["--lr", "inf"], "--lr must be a finite number, got 'inf'"),
        (["--smoothness", "nan"], "--smoothness must be a finite number, got 'nan'"),
    ],
)
def test_bad_input_is_named_and_nothing_is_written(tiny_model_path, tiny_vqgan_path, tmp_path, capsys, extra, message):
    from pictext.cli import main

    (tmp_path / "text.png").write_text("not an image")
    subs = {"{text}": str(tmp_path / "text.png"), "{clip}": str(tiny_model_path), "{vqgan}": str(tiny_vqgan_path)}
    extra = [subs.get(a, a) for a in extra]
    argv = ["generate", "a red circle", "--vqgan", str(tiny_vqgan_path), "--out", str(tmp_path / "out")]
    if "--clip" not in extra:
        argv += ["--clip", str(tiny_model_path)]
    assert main([*argv, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_empty_prompt_and_a_size_off_the_grid(tiny_model_path, tiny_vqgan_path, tmp_path, capsys):
    from pictext.cli import main

    common = ["--clip", str(tiny_model_path), "--vqgan", str(tiny_vqgan_path), "--out", str(tmp_path / "o")]
    assert main(["generate", "  ", *common]) == 2 and "prompt is empty" in capsys.readouterr().err
    assert main(["generate", "red:x1", *common]) == 2 and "must be a number" in capsys.readouterr().err
    assert main(["generate", "a red circle", "--size", "33", "--steps", "1", "--cutouts", "2", *common]) == 0
    assert "--size 33x33 is not a multiple of the VQGAN's factor; drew 32x32" in capsys.readouterr().err


def test_importing_generate_leaves_diffusers_unloaded():
    """VQGAN+CLIP and DALL-E must not pay for unCLIP's diffusers (2.7 s) at import: it loads on first use."""
    import subprocess
    import sys

    code = "import sys, pictext.generate, pictext.cli; print('diffusers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"


# ---- what the CLI writes: checked before drawing, names bounded, nothing half-written left behind -----------------


@pytest.fixture
def no_drawing(monkeypatch):
    """Every generator fails if asked to draw: what the CLI checks must be checked before."""
    from pictext.generate.base import METHODS, method

    def refuse(*args, **kwargs):
        raise AssertionError("the drawing started before the outputs were checked")

    for name in METHODS:
        monkeypatch.setattr(method(name), "__call__", refuse)


def test_an_out_that_is_a_file_or_a_linked_frames_folder_is_refused_before_drawing(
    tiny_model_path, tiny_vqgan_path, tmp_path, capsys, no_drawing
):
    from pictext.cli import main

    argv = ["generate", "a red circle", "--clip", str(tiny_model_path), "--vqgan", str(tiny_vqgan_path)]
    (tmp_path / "file").write_text("mine")
    assert main([*argv, "--out", str(tmp_path / "file")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err and (tmp_path / "file").read_text() == "mine"
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir(), elsewhere.mkdir()
    (elsewhere / "keep.png").write_text("mine")
    (out / "a-red-circle-0-frames").symlink_to(elsewhere)
    assert main([*argv, "--out", str(out)]) == 2
    assert "is a symlink; pictext does not replace links" in capsys.readouterr().err
    assert (elsewhere / "keep.png").read_text() == "mine"


def test_names_stay_short_in_bytes_and_stale_staging_is_removed(tmp_path, capsys):
    """interpolate of two pictures with names of over 200 bytes in two scripts: every name it writes fits 143
    bytes; a staging folder a killed run left (its process gone) goes on the next run, a live one's stays."""
    import subprocess
    import sys

    from pictext.cli import main
    from pictext.generate.outputs import slug

    from helpers import shape_image

    assert slug("радуга на фоне ночного города") == "радуга-на-фоне"  # a whole word last, within 40 bytes
    assert slug("a closeup watercolor portrait of a teacher") == "a-closeup-watercolor-portrait-of-a"
    assert slug("Ж" * 100) == "ж" * 20 and len(slug("猫" * 100).encode()) <= 40 and slug("猫" * 100) == "猫" * 13
    a, b = tmp_path / ("красный круг " * 9 + ".png"), tmp_path / ("蓝色方块" * 20 + ".png")  # 216 and 244 bytes
    shape_image("red", "circle").save(a), shape_image("blue", "square").save(b)
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".old-0.pictext-{dead.stdout.strip()}-abcd1234"  # a run killed while staging
    live = out / f".other-0.pictext-{os.getpid()}-abcd1234"  # a run still writing
    stale.mkdir(), live.mkdir()
    (stale / "old-0.png").write_bytes(b"half")
    assert main(["interpolate", str(a), str(b), "-n", "2", "--steps", "1", "--out", str(out)]) == 0
    names = [p.name for p in out.rglob("*")]
    assert any(n.endswith(".gif") for n in names) and max(len(n.encode()) for n in names) <= 143
    assert not stale.exists() and live.exists()


def test_the_classic_preset_is_the_default_for_a_published_vqgan_and_flags_override_it(
    tiny_model_path, tiny_vqgan_path, tmp_path, capsys
):
    from pictext.cli import main
    from pictext.generate.vqgan_clip import VQGANCLIPGenerator

    assert VQGANCLIPGenerator.preset_for({"vqgan": "taming/imagenet-f16-16384"}) == "classic"
    assert VQGANCLIPGenerator.preset_for({"vqgan": "last.ckpt"}) == "classic"  # taming's published format
    assert VQGANCLIPGenerator.preset_for({"vqgan": "vqgan"}) is None  # pictext's own: the plain defaults
    assert VQGANCLIPSettings.build({"steps": 2}, "classic") == VQGANCLIPSettings(
        steps=2, cutouts=32, cut_power=1.0, lr=0.1, lr_drops=()
    )
    with pytest.raises(GenerationError, match="preset must be one of this method's presets \\(classic\\)"):
        VQGANCLIPSettings.build({}, "pixray-deluxe")
    out = tmp_path / "out"
    argv = ["generate", "a red circle", "--clip", str(tiny_model_path), "--vqgan", str(tiny_vqgan_path),
            "--preset", "classic", "--steps", "2", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / "a-red-circle-0.json").read_text())
    assert record["steps"] == 2 and record["cutouts"] == 32 and record["lr_drops"] == []  # the flag over the preset
    result = generate("a red circle", clip=str(tiny_model_path), vqgan=tiny_vqgan_path, preset="classic", steps=1)
    assert result.records[0]["cutouts"] == 32


def test_bf16_autocast_is_opt_in_recorded_and_draws_near_the_fp32_picture(tiny_model_path, tiny_vqgan_path):
    """bf16 runs on any CPU (emulated where it is not native): the same seed draws a picture close to fp32's, not
    the same one; fp32 stays the default and is what the records say unless asked."""
    import numpy as np

    common = {"clip": str(tiny_model_path), "vqgan": tiny_vqgan_path, "steps": 3, "cutouts": 4, "seed": 1}
    fp32, bf16 = generate("a red circle", **common), generate("a red circle", precision="bf16", **common)
    assert fp32.records[0]["precision"] == "fp32" and bf16.records[0]["precision"] == "bf16"
    a, b = (np.asarray(r.image, dtype=float) for r in (fp32, bf16))
    assert a.shape == b.shape and 0 < np.abs(a - b).mean() < 32  # 0-255 pixels: the same drawing, rounded otherwise
    with pytest.raises(GenerationError, match="precision"):
        generate("a red circle", precision="fp16", **common)
