"""Shared fixtures: a private PICTEXT_HOME and a tiny CLIP saved in the native format."""

from __future__ import annotations

import pytest
import torch

from pictext.clip import CLIP, get_config
from pictext.clip.io import save_clip
from pictext.text import train_bpe_tokenizer

CAPTIONS = ["a red circle", "a blue square", "a green triangle", "a photo of a cat", "a photo of a dog", "a person"]


@pytest.fixture(autouse=True)
def private_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("pictext_home")
    monkeypatch.setenv("PICTEXT_HOME", str(home))
    monkeypatch.setenv("PICTEXT_QUIET", "1")
    return home


def _tiny_model(seed: int) -> CLIP:
    torch.manual_seed(seed)
    tokenizer = train_bpe_tokenizer(CAPTIONS * 5, vocab_size=300, context_length=32)
    config = get_config("tiny-vit")
    config = type(config)(
        embed_dim=config.embed_dim,
        vision=config.vision,
        text=type(config.text)(
            context_length=32,
            vocab_size=tokenizer.vocab_size,
            width=64,
            heads=1,
            layers=2,
            eot_token_id=tokenizer.eot_token_id,
        ),
        activation="gelu",
    )
    model = CLIP(config)
    model.tokenizer = tokenizer
    return model


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A tiny CLIP with random weights (seed 0) in the native format."""
    return save_clip(_tiny_model(0), tmp_path_factory.mktemp("models") / "tiny.safetensors")


@pytest.fixture(scope="session")
def other_model_path(tmp_path_factory):
    """The same architecture as tiny_model_path with other random weights (seed 1)."""
    return save_clip(_tiny_model(1), tmp_path_factory.mktemp("models") / "other.safetensors")


@pytest.fixture
def image_dir(tmp_path):
    """Three good images of different sizes and modes, plus a corrupt one."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(folder / "red.png")
    Image.new("L", (25, 50), 128).save(folder / "grey.jpg")
    Image.new("RGBA", (32, 32), (0, 0, 255, 128)).save(folder / "blue.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return folder
