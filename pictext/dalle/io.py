"""A DALL-E as one self-describing file: the transformer, its text tokenizer and its image tokenizer together.

The image tokenizer's weights travel inside the file (under `image_tokenizer.`), so a transformer can never
meet a codebook it was not trained on; `DALLEPipeline.check_tokenizer` guards one passed in by hand.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from pictext import checkpoint
from pictext.config import from_dict, to_dict
from pictext.dalle.dvae import DVAE, DVAEConfig
from pictext.dalle.model import DALLE, DALLEConfig
from pictext.dalle.sampling import SamplingConfig, sample
from pictext.errors import PictextError
from pictext.images.tensors import to_images
from pictext.text import Tokenizer, tokenizer_from_metadata
from pictext.vqgan.io import IN_DALLE
from pictext.vqgan.model import VQGAN, VQGANConfig

logger = logging.getLogger(__name__)
KIND = "dalle"
ImageTokenizer = VQGAN | DVAE  # both: encode(x).indices, decode_indices(indices), config.n_embed / resolution / factor
_TOKENIZERS: dict[str, tuple[type, type]] = {"vqgan": (VQGAN, VQGANConfig), "dvae": (DVAE, DVAEConfig)}


class TokenizerMismatchError(PictextError, ValueError):
    pass


@dataclass
class DALLEPipeline:
    """What drawing needs: the transformer, the text tokenizer and the image tokenizer (a VQGAN or a dVAE)."""

    model: DALLE
    text_tokenizer: Tokenizer
    image_tokenizer: ImageTokenizer

    def __post_init__(self) -> None:
        self.check_tokenizer(self.image_tokenizer)

    def check_tokenizer(self, tokenizer: ImageTokenizer) -> None:
        c, v = self.model.config, tokenizer.config
        grid = v.resolution // v.factor
        if v.n_embed != c.image_vocab or grid != c.image_grid:
            raise TokenizerMismatchError(
                f"the image tokenizer has {v.n_embed} codes on a {grid}x{grid} grid, but the transformer was "
                f"trained on {c.image_vocab} codes on a {c.image_grid}x{c.image_grid} grid; use the tokenizer "
                "it was trained with (the one inside its file)"
            )

    @property
    def resolution(self) -> int:
        return self.image_tokenizer.config.resolution

    def text(self, prompt: str) -> tuple[torch.Tensor, bool]:
        """((1, text_len) ids, whether the prompt was cut to fit); an empty prompt is an error."""
        if not prompt.strip():
            raise ValueError("the prompt is empty; DALL-E draws a caption, e.g. 'a red circle'")
        length = self.model.config.text_len
        truncated = len(self.text_tokenizer.encode(prompt)) + 2 > length  # + start and end tokens
        if truncated:
            logger.warning("the prompt is longer than the model's %d text tokens; its end was cut", length)
        return self.text_tokenizer(prompt, context_length=length, truncate=True), truncated

    @torch.no_grad()
    def draw(
        self,
        prompt: str,
        n: int,
        cfg: SamplingConfig | None = None,
        seed: int = 0,
        prime: Image.Image | None = None,
        prime_rows: int | None = None,
        batch_size: int = 16,
        guides: Sequence[tuple[str, float]] = (),
    ) -> list[Image.Image]:
        """`n` pictures of `prompt`, drawn `batch_size` at a time with a seeded generator. `prime`: keep the
        top `prime_rows` token rows of this image (default: half) and draw the rest. `guides`: further captions
        and their weights (the prompt's is 1) for composable guidance (`sampling.py`)."""
        from pictext.images.tensors import to_pixels

        device = next(self.model.parameters()).device
        text = self.text(prompt)[0].to(device)
        guide_ids = [(self.text(caption)[0].to(device), weight) for caption, weight in guides]
        c = self.model.config
        start = None
        if prime is not None:
            rows = c.image_grid // 2 if prime_rows is None else prime_rows
            if not 0 < rows < c.image_grid:
                raise ValueError(f"prime_rows must be between 1 and {c.image_grid - 1}, got {rows}")
            codes = self.image_tokenizer.encode(to_pixels([prime], self.resolution).to(device)).indices  # (1, g, g)
            start = codes.flatten(1)[:, : rows * c.image_grid]
        generator = torch.Generator(device).manual_seed(seed)  # on the model's device, as multinomial needs
        images = []
        for begin in range(0, n, batch_size):
            b = min(batch_size, n - begin)
            primed = None if start is None else start.expand(b, -1)
            tokens = sample(self.model, text.expand(b, -1), cfg or SamplingConfig(), generator, prime=primed,
                            guides=[(ids.expand(b, -1), weight) for ids, weight in guide_ids]).tokens  # fmt: skip
            pixels = self.image_tokenizer.decode_indices(tokens).clamp(-1, 1)
            images += to_images(pixels)
        return images


def save_dalle(pipeline: DALLEPipeline, path: str | os.PathLike, half: bool = False) -> Path:
    """One .safetensors: transformer and image tokenizer weights, both configs and the text tokenizer."""
    tensors = dict(pipeline.model.state_dict())
    tensors |= {IN_DALLE + k: v for k, v in pipeline.image_tokenizer.state_dict().items()}
    meta = {
        "config": to_dict(pipeline.model.config),
        "image_tokenizer": {
            "kind": tokenizer_kind(pipeline.image_tokenizer),
            "config": to_dict(pipeline.image_tokenizer.config),
        },  # fmt: skip
        "tokenizer": pipeline.text_tokenizer.to_metadata(),
    }
    return checkpoint.save(path, tensors, KIND, meta, half=half)


def load_dalle(path: str | os.PathLike) -> DALLEPipeline:
    """A DALL-E pipeline in eval mode, float32."""
    tensors, meta = checkpoint.load(path, KIND)
    image_tokenizer = _image_tokenizer(tensors, meta, path)
    try:
        config = from_dict(DALLEConfig, meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{path}: its recorded configs are not a DALL-E's ({e})") from e
    rest = {k: v for k, v in tensors.items() if not k.startswith(IN_DALLE)}
    model = checkpoint.build_loaded(lambda: DALLE(config), rest, path)
    text = tokenizer_from_metadata(meta["tokenizer"], path)
    return DALLEPipeline(model.eval(), text, image_tokenizer.eval())


def load_dalle_tokenizer(path: str | os.PathLike) -> ImageTokenizer:
    """The image tokenizer inside a DALL-E file alone (a VQGAN or a dVAE), eval mode, float32."""
    return _image_tokenizer(*checkpoint.load(path, KIND), path)


def _image_tokenizer(tensors: dict, meta: dict, path: str | os.PathLike) -> ImageTokenizer:
    try:
        tokenizer_cls, tokenizer_config_cls = _TOKENIZERS[meta["image_tokenizer"]["kind"]]
        tokenizer_config = from_dict(tokenizer_config_cls, meta["image_tokenizer"]["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise checkpoint.CheckpointError(f"{path}: its recorded configs are not a DALL-E's ({e})") from e
    own = {k[len(IN_DALLE) :]: v for k, v in tensors.items() if k.startswith(IN_DALLE)}
    return checkpoint.build_loaded(lambda: tokenizer_cls(tokenizer_config), own, path)


def tokenizer_kind(tokenizer: ImageTokenizer) -> str:
    return "dvae" if isinstance(tokenizer, DVAE) else "vqgan"


def save_dvae(model: DVAE, path: str | os.PathLike) -> Path:
    """A dVAE on its own, as one self-describing .safetensors (kind "dvae")."""
    return checkpoint.save(path, model.state_dict(), "dvae", {"config": to_dict(model.config)})


def load_image_tokenizer(spec: str) -> ImageTokenizer:
    """'vqgan:M' (a VQGAN file, taming .ckpt or model name) or 'dvae:M' (a native dVAE file, or a folder holding
    OpenAI's encoder.pkl and decoder.pkl)."""
    from pictext import hub

    kind, _, name = spec.partition(":")
    if kind not in _TOKENIZERS or not name:
        raise ValueError(f"an image tokenizer is vqgan:MODEL or dvae:MODEL (a file or model name), got {spec!r}")
    if kind == "vqgan":
        from pictext.vqgan.io import load_vqgan

        return load_vqgan(hub.resolve(name))
    path = hub.resolve(name)
    if path.is_dir():
        from pictext.dalle.dvae import load_openai_dvae

        return load_openai_dvae(path / "encoder.pkl", path / "decoder.pkl")
    model, _ = checkpoint.load_model(path, "dvae", DVAEConfig, DVAE)
    return model.eval()


__all__ = ["DALLEPipeline", "ImageTokenizer", "TokenizerMismatchError", "load_dalle",
           "load_image_tokenizer", "save_dalle", "save_dvae"]  # fmt: skip
