"""VQGAN: quantizers on inputs whose answer is known, parity with taming-transformers, taming checkpoints read
as data, forward/backward of the small configs."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from pictext.checkpoint import CheckpointError
from pictext.vqgan import VQGAN, GumbelQuantizer, VectorQuantizer, VQGANConfig
from pictext.vqgan.convert import load_taming

TINY = VQGANConfig(
    resolution=32, ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), z_channels=32, embed_dim=16,
    n_embed=64,
)  # fmt: skip


def codebook_quantizer(**kwargs) -> VectorQuantizer:
    q = VectorQuantizer(n_embed=4, embed_dim=2, **kwargs)
    with torch.no_grad():
        q.embedding.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        if q.ema_decay:
            q.ema_sum.copy_(q.embedding.weight)  # the EMA starts from the codebook it is given
    return q


def grid(points: list[list[float]]) -> torch.Tensor:  # N points -> (1, 2, 1, N)
    return torch.tensor(points).t()[None, :, None, :].clone()


def test_nearest_code_and_straight_through_gradient():
    q = codebook_quantizer()
    z = grid([[0.9, 0.2], [0.1, 0.8], [-0.6, -0.7], [0.1, -0.1]]).requires_grad_(True)
    out = q(z)
    assert out.indices.flatten().tolist() == [1, 2, 3, 0]
    assert torch.equal(out.z_q.detach(), q.embedding.weight[[1, 2, 3, 0]].t()[None, :, None, :])
    upstream = torch.randn_like(out.z_q)
    (out.z_q * upstream).sum().backward()
    assert torch.equal(z.grad, upstream)  # d z_q / d z is the identity: the decoder's gradient reaches z as is
    assert out.perplexity.item() == pytest.approx(4.0)  # four codes used equally


@pytest.mark.parametrize("legacy", [True, False])
def test_commitment_loss_in_both_beta_placements(legacy):
    q = codebook_quantizer(beta=0.25, legacy=legacy)
    z = grid([[0.9, 0.2], [0.1, 0.8]]).requires_grad_(True)
    out = q(z)
    codes = q.embedding.weight[[1, 2]].t()[None, :, None, :]
    gap = F.mse_loss(z, codes).item()
    assert out.loss.item() == pytest.approx(1.25 * gap)  # both terms have the same value, weighted 1 and beta
    out.loss.backward()
    # the encoder side gets 2 (z - e) / N from the commitment term: weight 1 (legacy) or beta (paper)
    z_weight = 1.0 if legacy else 0.25
    assert torch.allclose(z.grad, z_weight * 2 * (z - codes).detach() / z.numel())
    e_grad = q.embedding.weight.grad[[1, 2]]
    e_weight = 0.25 if legacy else 1.0
    assert torch.allclose(e_grad.t()[None, :, None, :], e_weight * 2 * (codes - z).detach() / z.numel())


def test_ema_codebook_moves_towards_its_assignments():
    q = codebook_quantizer(ema_decay=0.5).train()
    z = grid([[0.8, 0.0], [0.6, 0.0], [0.1, 0.9]])  # two points for code 1, one for code 2
    q(z)
    # count_1 = 0.5 * 1 + 0.5 * 2 = 1.5, sum_1 = 0.5 * (1, 0) + 0.5 * (1.4, 0) = (1.2, 0); smoothing is ~1e-5
    assert q.ema_count[1].item() == pytest.approx(1.5) and q.ema_count[3].item() == pytest.approx(0.5)
    assert torch.allclose(q.embedding.weight[1], torch.tensor([0.8, 0.0]), atol=1e-4)
    assert torch.allclose(q.embedding.weight[2], torch.tensor([0.05, 0.95]) / 1.0, atol=1e-4)
    assert torch.allclose(q.embedding.weight[3], torch.tensor([-1.0, -1.0]), atol=1e-4)  # unused: unchanged
    assert not q.embedding.weight.requires_grad and q(z).loss.item() > 0  # only the commitment term remains


def test_dead_codes_restart_on_encoder_outputs():
    torch.manual_seed(0)
    q = codebook_quantizer(restart_after=2).train()
    z = grid([[0.9, 0.1], [1.1, -0.1]])  # only code 1 is ever used
    q(z)
    assert torch.equal(q.embedding.weight[3], torch.tensor([-1.0, -1.0]))  # idle for one step: kept
    q(z)
    batch = z[0, :, 0, :].t()
    for code in (0, 2, 3):  # idle for two steps: moved onto one of this batch's vectors
        assert any(torch.equal(q.embedding.weight[code], v) for v in batch)
    assert q.idle_steps.tolist() == [0, 0, 0, 0]


def test_gumbel_quantizer_is_hard_in_eval_and_differentiable_in_training():
    torch.manual_seed(0)
    g = GumbelQuantizer(in_channels=8, n_embed=16, embed_dim=4)
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    g.eval()
    out = g(z)
    assert torch.equal(out.z_q, g.embed.weight[out.indices].permute(0, 3, 1, 2))
    g.train()
    trained = g(z, generator=torch.Generator().manual_seed(1))
    trained.z_q.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0 and trained.loss.item() >= 0


@pytest.mark.parametrize("quantizer", ["vq", "gumbel"])
def test_tiny_forward_backward_every_parameter_gets_a_gradient(quantizer):
    torch.manual_seed(0)
    model = VQGAN(dataclasses.replace(TINY, quantizer=quantizer)).train()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    out = model(x)
    assert out.reconstruction.shape == x.shape and out.quantized.indices.shape == (2, 16, 16)
    (F.l1_loss(out.reconstruction, x) + out.quantized.loss).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not missing and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model(torch.rand(1, 3, 48, 32)).reconstruction.shape == (1, 3, 48, 32)  # any multiple of the factor
    with pytest.raises(ValueError, match="multiples of 2"):
        model(torch.rand(1, 3, 33, 32))


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="multiples of 32"):
        VQGANConfig(ch=48)
    with pytest.raises(ValueError, match="quantizer"):
        VQGANConfig(quantizer="kmeans")


# ---- taming-transformers -------------------------------------------------------------------------------------------

DDCONFIG = dict(
    double_z=False, z_channels=32, resolution=32, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 2], num_res_blocks=1,
    attn_resolutions=[16], dropout=0.0,
)  # fmt: skip
YAML = """model:
  base_learning_rate: 4.5e-06
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: 16
    n_embed: 64
    ddconfig:
      double_z: false
      z_channels: 32
      resolution: 32
      in_channels: 3
      out_ch: 3
      ch: 32
      ch_mult: [1, 2]
      num_res_blocks: 1
      attn_resolutions: [16]
      dropout: 0.0
    lossconfig:
      target: taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params: {disc_start: 10000, disc_weight: 0.8, codebook_weight: 1.0}
"""


class LightningCallback:  # stands for a class the checkpoint pickles that pictext must never import or run
    def __reduce__(self):
        return (eval, ("__import__('os').system('echo pwned')",))


def taming_checkpoint(tmp_path, sd: dict[str, torch.Tensor]):
    """A .ckpt laid out as PyTorch Lightning writes taming's: state_dict, loss weights, optimizer state, callbacks
    and hyper-parameters with classes of their own."""
    sd = {**sd, "loss.discriminator.main.0.weight": torch.randn(64, 3, 4, 4), "loss.logvar": torch.zeros(())}
    ckpt = {
        "epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.0.8", "state_dict": sd,
        "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 4.5e-6}]}],
        "callbacks": {LightningCallback: {"best_model_score": torch.tensor(0.5)}},
        "hyper_parameters": argparse.Namespace(embed_dim=16),
    }  # fmt: skip
    torch.save(ckpt, tmp_path / "last.ckpt")
    (tmp_path / "last.yaml").write_text(YAML)
    return tmp_path / "last.ckpt"


def taming_vqmodel():
    """A random-initialised taming VQModel's parts and their state dict in VQModel's key layout."""
    taming_model = pytest.importorskip("taming.modules.diffusionmodules.model")
    from taming.modules.vqvae.quantize import VectorQuantizer as TamingQuantizer

    torch.manual_seed(0)
    parts = {
        "encoder": taming_model.Encoder(**DDCONFIG),
        "decoder": taming_model.Decoder(**DDCONFIG),
        "quantize": TamingQuantizer(64, 16, beta=0.25),
        "quant_conv": torch.nn.Conv2d(32, 16, 1),
        "post_quant_conv": torch.nn.Conv2d(16, 32, 1),
    }
    sd = {f"{name}.{k}": v for name, part in parts.items() for k, v in part.state_dict().items()}
    return parts, sd


def test_taming_vqmodel_parity_through_its_checkpoint(tmp_path):
    parts, sd = taming_vqmodel()
    ours = load_taming(taming_checkpoint(tmp_path, sd))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        h = parts["quant_conv"](parts["encoder"](x))
        z_q, loss, (_, _, indices) = parts["quantize"](h)
        want = parts["decoder"](parts["post_quant_conv"](z_q))
        got = ours(x)
    assert torch.equal(got.quantized.indices.flatten(), indices.flatten())
    assert torch.allclose(got.quantized.z_q, z_q, atol=1e-5) and torch.allclose(got.quantized.loss, loss, atol=1e-6)
    assert (got.reconstruction - want).abs().max().item() < 1e-5


def test_taming_checkpoints_are_read_as_data_and_wrong_files_named(tmp_path, tiny_model_path, capfd):
    _, sd = taming_vqmodel()
    ckpt = taming_checkpoint(tmp_path, sd)
    load_taming(ckpt)
    assert "pwned" not in capfd.readouterr().out  # the callback's class was never called
    (tmp_path / "wrong.yaml").write_text(YAML.replace("n_embed: 64", "n_embed: 128"))
    with pytest.raises(CheckpointError, match="do not match the architecture"):
        load_taming(ckpt, tmp_path / "wrong.yaml")
    (tmp_path / "kl.yaml").write_text(YAML.replace("double_z: false", "double_z: true"))
    with pytest.raises(CheckpointError, match="KL autoencoder"):
        load_taming(ckpt, tmp_path / "kl.yaml")
    (tmp_path / "notes.yaml").write_text("just: some text\n")
    with pytest.raises(CheckpointError, match="not a taming VQGAN config"):
        load_taming(ckpt, tmp_path / "notes.yaml")
    with pytest.raises(CheckpointError, match="not a PyTorch zip archive .*; a taming .ckpt is one"):
        load_taming(tmp_path / "last.yaml", tmp_path / "last.yaml")
    with pytest.raises(CheckpointError, match="not a PyTorch zip archive"):
        load_taming(tiny_model_path, tmp_path / "last.yaml")  # safetensors is not a taming checkpoint either
    torch.save({"epoch": 1}, tmp_path / "empty.ckpt")
    with pytest.raises(CheckpointError, match="holds no state dict of tensors"):
        load_taming(tmp_path / "empty.ckpt", tmp_path / "last.yaml")


def test_gumbel_checkpoint_layout_loads(tmp_path):
    """taming's GumbelVQ keys, built by hand (the PyPI taming has no GumbelQuantize): quantize.proj, quantize.embed."""
    torch.manual_seed(0)
    config = dataclasses.replace(TINY, quantizer="gumbel", embed_dim=32)
    sd = VQGAN(config).state_dict()
    assert {"quantize.proj.weight", "quantize.embed.weight"} <= set(sd)
    yaml = YAML.replace("taming.models.vqgan.VQModel", "taming.models.vqgan.GumbelVQ").replace(
        "embed_dim: 16", "embed_dim: 32"
    )
    torch.save({"state_dict": sd}, tmp_path / "gumbel.ckpt")
    (tmp_path / "gumbel.yaml").write_text(
        yaml.replace("  params:\n    embed_dim", "  params:\n    kl_weight: 1.0e-08\n    embed_dim")
    )
    model = load_taming(tmp_path / "gumbel.ckpt")
    assert model.config.quantizer == "gumbel" and model.config.kl_weight == 1e-8
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())


# ---- losses, training, files ---------------------------------------------------------------------------------------


def test_hinge_adaptive_weight_and_psnr_on_known_values():
    from pictext.vqgan.loss import adaptive_weight, hinge_d_loss, psnr

    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (0.25 + 0.75))  # relu(1-x) and relu(1+x)
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    nll, g = (3 * w).sum(), (w**2).sum()  # gradients (3, 3) and (2, 4) at the last layer
    expected = (torch.tensor([3.0, 3.0]).norm() / (torch.tensor([2.0, 4.0]).norm() + 1e-4)).item()
    assert adaptive_weight(nll, g, w).item() == pytest.approx(expected)
    x = torch.zeros(1, 3, 4, 4)
    assert psnr(x, x + 0.2).item() == pytest.approx(20.0, abs=1e-4)  # a 0.1 error on [0, 1]: 20 dB


def _tiny_data(n: int = 8):
    from pictext.data.shapes import ShapesWorld

    return ShapesWorld(size=32, split="all", max_shapes=1, length=n)


TINY_TRAIN = dict(batch_size=4, lr=2e-3, warmup=1, precision="fp32", checkpoint_every=3, disc_start=4)


@pytest.mark.slow
def test_reconstruction_loss_falls_and_the_adversarial_phase_runs():
    from pictext.vqgan.discriminator import DiscriminatorConfig, PatchDiscriminator
    from pictext.vqgan.train import VQGANTrainConfig, train_vqgan

    def untouched(disc: PatchDiscriminator, initial: dict[str, torch.Tensor]) -> bool:
        return all(torch.equal(initial[k], v) for k, v in disc.state_dict().items())

    early = PatchDiscriminator(DiscriminatorConfig(ndf=16, n_layers=2))
    initial = {k: v.clone() for k, v in early.state_dict().items()}
    logs = train_vqgan(VQGAN(TINY), _tiny_data(), VQGANTrainConfig(steps=4, **TINY_TRAIN), discriminator=early)
    assert all(x.d == 0 for x in logs) and untouched(early, initial)  # no discriminator step before disc_start (4)

    torch.manual_seed(0)
    model = VQGAN(TINY)
    disc = PatchDiscriminator(DiscriminatorConfig(ndf=16, n_layers=2))
    initial = {k: v.clone() for k, v in disc.state_dict().items()}
    logs = train_vqgan(model, _tiny_data(), VQGANTrainConfig(steps=40, **TINY_TRAIN), discriminator=disc)
    first, last = sum(x.rec for x in logs[:3]) / 3, sum(x.rec for x in logs[-3:]) / 3
    assert last < 0.6 * first, (first, last)
    # From step 4 the discriminator trains. An untrained one scores real and fake near 0, a hinge loss near 1;
    # later steps are not asserted > 0: a discriminator that wins outright reaches exactly 0 (it did, in one run).
    trained = any(not torch.equal(initial[k], v) for k, v in disc.named_parameters())  # weights, not BN statistics
    assert all(x.d == 0 for x in logs[:4]) and logs[4].d > 0.5 and trained
    assert 0 < logs[-1].usage <= 1 and logs[-1].perplexity >= 1


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_adversarial_phase_resumes_exactly_under_either_schedule(tmp_path, schedule):
    """Both networks and both optimizers are in the state (tests/test_training.py resumes every family's run
    before its adversarial phase)."""
    from pictext.vqgan.discriminator import DiscriminatorConfig, PatchDiscriminator
    from pictext.vqgan.train import VQGANTrainConfig, train_vqgan

    cfg = VQGANTrainConfig(steps=6, **TINY_TRAIN, schedule=schedule)  # TINY_TRAIN warms up for 1 step

    def fresh():
        torch.manual_seed(0)
        return VQGAN(TINY), PatchDiscriminator(DiscriminatorConfig(ndf=16, n_layers=2))

    model, disc = fresh()
    straight = train_vqgan(model, _tiny_data(), cfg, discriminator=disc)

    class Stop(Exception):
        pass

    def stop_after_3(step, log):
        if step == 2:
            raise Stop

    model, disc = fresh()
    with pytest.raises(Stop):
        train_vqgan(model, _tiny_data(), cfg, discriminator=disc, run_dir=tmp_path, on_step=stop_after_3)
    model, disc = fresh()
    rest = train_vqgan(model, _tiny_data(), cfg, discriminator=disc, run_dir=tmp_path)
    assert len(rest) == 3
    assert [x.rec for x in rest] == pytest.approx([x.rec for x in straight[3:]], rel=1e-5)
    assert [x.d for x in rest] == pytest.approx([x.d for x in straight[3:]], rel=1e-5)
    if schedule == "cosine":  # wired in: both take the peak lr for steps 0 and 1, then the cosine one decays
        model, disc = fresh()
        constant = train_vqgan(model, _tiny_data(), dataclasses.replace(cfg, schedule="constant"), discriminator=disc)
        assert [x.rec for x in constant[:3]] == pytest.approx([x.rec for x in straight[:3]], rel=1e-6)
        assert [x.rec for x in constant[3:]] != pytest.approx([x.rec for x in straight[3:]], rel=1e-6)
    with pytest.raises(ValueError, match="schedule must be 'cosine' or 'constant'"):
        VQGANTrainConfig(schedule="linear")


def test_native_files_round_trip_and_the_wrong_family_is_named(tmp_path, tiny_model_path):
    import pictext
    from pictext.vqgan.io import load_vqgan, save_vqgan

    torch.manual_seed(0)
    model = VQGAN(TINY).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    again = load_vqgan(save_vqgan(model, tmp_path / "v.safetensors"))
    assert again.config == model.config
    with torch.no_grad():
        assert torch.equal(again(x).reconstruction, model(x).reconstruction)
    half = load_vqgan(save_vqgan(model, tmp_path / "h.safetensors", half=True))
    assert next(half.parameters()).dtype == torch.float32  # stored as fp16, used as fp32
    assert (tmp_path / "h.safetensors").stat().st_size < 0.6 * (tmp_path / "v.safetensors").stat().st_size
    with pytest.raises(CheckpointError, match="'clip' checkpoint, not a 'vqgan' model"):
        load_vqgan(tiny_model_path)
    with pytest.raises(CheckpointError, match="'vqgan' checkpoint, not a 'clip' model"):
        pictext.load(tmp_path / "v.safetensors")


def test_cli_trains_and_reconstructs_and_names_bad_input(tmp_path, capsys):
    from PIL import Image

    from pictext.cli import main
    from pictext.data.shapes import ShapesWorld

    folder = tmp_path / "pairs"
    folder.mkdir()
    world = ShapesWorld(size=64, split="all", max_shapes=1, length=6)
    for i in range(6):
        image, caption = world[i]
        image.save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(caption)
    out = tmp_path / "v.safetensors"
    argv = ["train", "vqgan", "--data", str(folder), "--steps", "2", "--batch-size", "2", "--out", str(out)]
    assert main([*argv, "--precision", "fp32"]) == 0 and out.is_file()
    assert main([*argv, "--loss", "siglip"]) == 2
    assert "--loss: CLIP training options" in capsys.readouterr().err
    (tmp_path / "bad.png").write_text("not an image")
    code = main(["reconstruct", str(folder / "0.png"), str(tmp_path / "bad.png"), "--vqgan", str(out),
                 "--size", "62", "-o", str(tmp_path / "rec")])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 1 and "bad.png" in captured.err and "multiple of the VQGAN's factor 4; using 64" in captured.err
    assert "PSNR" in captured.out and Image.open(tmp_path / "rec" / "0-reconstruction.png").size == (128, 64)
    assert main(["reconstruct", str(folder / "0.png"), "--vqgan", "no-such-vqgan"]) == 2
    assert "neither a file nor a model" in capsys.readouterr().err


def test_a_missing_default_vqgan_says_how_to_build_it(monkeypatch, tmp_path):
    from pictext import hub

    monkeypatch.setattr(hub, "SHIPPED", tmp_path / "nothing-shipped")
    with pytest.raises(hub.ModelNotFoundError, match="pictext models build vqgan"):
        hub.resolve("vqgan")


def test_the_shipped_vqgan_reconstructs_shapes_and_emoji_like_pictures():
    """Quality on the committed checkpoint, with a margin a fair model clears on any machine."""
    from pictext import hub
    from pictext.data.shapes import ShapesWorld
    from pictext.images.tensors import to_pixels
    from pictext.vqgan.io import load_vqgan
    from pictext.vqgan.loss import psnr

    shipped = hub.SHIPPED / "vqgan.safetensors"
    assert shipped.is_file() and shipped.stat().st_size < 20e6  # fp16, within the budget
    model = load_vqgan(shipped)
    world = ShapesWorld(size=64, split="all", max_shapes=2, seed=123, length=32)
    x = to_pixels([world[i][0] for i in range(len(world))], 64)
    with torch.no_grad():
        out = model(x)
    assert psnr(x, out.reconstruction).mean().item() > 20.0


def test_quantizer_under_bf16_autocast_picks_and_updates_codes_in_fp32():
    torch.manual_seed(0)
    q = VectorQuantizer(n_embed=8, embed_dim=4, ema_decay=0.9, restart_after=1).train()
    z = torch.randn(2, 4, 3, 3).bfloat16()
    expected = q.nearest(z.float().permute(0, 2, 3, 1).reshape(-1, 4))  # fp32 distances to the current codebook
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(z)  # EMA update and dead-code restart write bf16 activations into the fp32 codebook
    assert out.z_q.dtype == torch.float32 and q.embedding.weight.dtype == torch.float32
    assert torch.equal(out.indices.flatten(), expected)
