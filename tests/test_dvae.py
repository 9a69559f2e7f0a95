"""DALL-E's discrete VAE: parity with OpenAI's `dall_e` modules, their pickles read as data, the training
schedules, and a tiny model that learns."""

from __future__ import annotations

import dall_e  # OpenAI's dVAE code (`pip install --no-deps dall-e`; `make test` installs it)
import pytest
import torch

from pictext.checkpoint import CheckpointError
from pictext.dalle.dvae import (
    DVAE,
    DVAEConfig,
    kl_weight,
    load_openai_dvae,
    logit_laplace_nll,
    temperature,
    train_dvae,
)

SMALL = dict(vocab_size=512, n_hid=64, n_blk_per_group=1)


def _reference(seed: int = 0):
    torch.manual_seed(seed)
    encoder = dall_e.Encoder(**SMALL, requires_grad=False)
    decoder = dall_e.Decoder(**SMALL, n_init=32, requires_grad=False)
    return encoder.eval(), decoder.eval()


def test_openai_encoder_and_decoder_weights_load_and_give_the_same_outputs():
    encoder, decoder = _reference()
    model = DVAE(DVAEConfig(**SMALL, n_init=32)).eval()
    model.encoder.load_state_dict(encoder.state_dict())  # same names, same shapes: strict load
    model.decoder.load_state_dict(decoder.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(x), encoder(x), atol=1e-5, rtol=1e-5)
        z = torch.nn.functional.one_hot(torch.randint(0, 512, (2, 4, 4)), 512).permute(0, 3, 1, 2).float()
        torch.testing.assert_close(model.decoder(z), decoder(z), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.encode(x * 2 - 1).indices, encoder(dall_e.map_pixels(x)).argmax(1))


def test_openai_pickled_modules_are_read_as_data(tmp_path, monkeypatch):
    """OpenAI released encoder.pkl and decoder.pkl as whole pickled modules: they import with no dall_e class
    ever being loaded, and give the reference's outputs."""
    encoder, decoder = _reference(1)
    torch.save(encoder, tmp_path / "encoder.pkl")
    torch.save(decoder, tmp_path / "decoder.pkl")
    import sys

    for name in [m for m in sys.modules if m == "dall_e" or m.startswith("dall_e.")]:
        monkeypatch.setitem(sys.modules, name, None)  # importing dall_e now fails: the loader must not need it
    with pytest.raises(ImportError):
        torch.load(tmp_path / "encoder.pkl", weights_only=False)  # what unpickling the code would do
    model = load_openai_dvae(tmp_path / "encoder.pkl", tmp_path / "decoder.pkl")
    assert model.config.vocab_size == 512 and model.config.n_hid == 64 and model.config.n_init == 32
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(x), encoder(x), atol=1e-5, rtol=1e-5)
    (tmp_path / "notes.pkl").write_text("not a pickle")
    with pytest.raises(CheckpointError, match="not a PyTorch zip archive"):
        load_openai_dvae(tmp_path / "notes.pkl", tmp_path / "decoder.pkl")
    torch.save({"epoch": 3}, tmp_path / "dict.pkl")
    with pytest.raises(CheckpointError, match="not OpenAI dVAE modules"):
        load_openai_dvae(tmp_path / "dict.pkl", tmp_path / "decoder.pkl")


def test_temperature_reaches_its_floor_and_kl_weight_warms_up():
    taus = [temperature(s, 1000) for s in range(1000)]
    assert taus[0] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(taus, taus[1:]))  # never rises
    assert taus[800:] == [1 / 16] * 200  # the floor is reached and held
    assert [kl_weight(s, 100, 6.6) for s in (0, 50, 100, 500)] == [0.0, 3.3, 6.6, 6.6]


def test_logit_laplace_nll_matches_its_density():
    x, mu, log_b = torch.tensor([0.3]), torch.tensor([0.2]), torch.tensor([-0.5])
    b = torch.exp(log_b)
    logit = torch.log(x / (1 - x))
    density = torch.exp(-(logit - mu).abs() / b) / (2 * b * x * (1 - x))
    torch.testing.assert_close(logit_laplace_nll(x, mu, log_b), -torch.log(density).mean())


def test_training_lowers_the_loss_and_anneals_to_the_floor():
    """Six flat colours: the relaxed reconstruction likelihood improves by a wide margin in a short fit (the
    dVAE learns slowly; a sharper claim would need minutes), and the schedule ends at its floor."""
    torch.manual_seed(0)
    colours = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, 1], [-1, -1, -1], [1, 1, -1]])
    images = colours.view(6, 3, 1, 1).expand(6, 3, 16, 16).contiguous()
    model = DVAE(DVAEConfig(vocab_size=512, n_hid=32, n_blk_per_group=1, n_init=32, resolution=16))
    logs = train_dvae(model, images, steps=200, batch_size=6, lr=1e-3, kl_final=0.0)
    first, last = (sum(x["nll"] for x in part) / len(part) for part in (logs[:20], logs[-20:]))
    assert last < first - 0.5, (first, last)
    assert logs[-1]["tau"] == pytest.approx(1 / 16)
