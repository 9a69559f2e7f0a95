"""Drawing with a DALL-E: the transformer, its text tokenizer and its image tokenizer, from a caption to pictures.

`DALLEPipeline.check_tokenizer` guards a tokenizer passed in by hand: a transformer must never meet a codebook
it was not trained on (a DALL-E file carries its own, `dalle/io.py`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from pictext.dalle.dvae import DVAE
from pictext.dalle.model import DALLE
from pictext.dalle.sampling import SamplingConfig, sample
from pictext.errors import PictextError, UsageError
from pictext.images.tensors import to_images
from pictext.text import Tokenizer
from pictext.vqgan.model import VQGAN

logger = logging.getLogger(__name__)
ImageTokenizer = VQGAN | DVAE  # both: encode(x).indices, decode_indices(indices), config.n_embed / resolution / factor


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
            raise UsageError("the prompt is empty; DALL-E draws a caption, e.g. 'a red circle'")
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
        check: Callable[[], None] | None = None,
    ) -> list[Image.Image]:
        """`n` pictures of `prompt`, drawn `batch_size` at a time with a seeded generator. `prime`: keep the
        top `prime_rows` token rows of this image (default: half) and draw the rest. `guides`: further captions
        and their weights (the prompt's is 1) for composable guidance (`sampling.py`). `check` is called before every
        token (it raises `pictext.errors.Cancelled` to stop)."""
        from pictext.images.tensors import to_pixels

        device = next(self.model.parameters()).device
        text = self.text(prompt)[0].to(device)
        guide_ids = [(self.text(caption)[0].to(device), weight) for caption, weight in guides]
        c = self.model.config
        start = None
        if prime is not None:
            rows = c.image_grid // 2 if prime_rows is None else prime_rows
            if not 0 < rows < c.image_grid:
                raise UsageError(f"prime_rows must be between 1 and {c.image_grid - 1}, got {rows}")
            codes = self.image_tokenizer.encode(to_pixels([prime], self.resolution).to(device)).indices  # (1, g, g)
            start = codes.flatten(1)[:, : rows * c.image_grid]
        generator = torch.Generator(device).manual_seed(seed)  # on the model's device, as multinomial needs
        images = []
        for begin in range(0, n, batch_size):
            b = min(batch_size, n - begin)
            primed = None if start is None else start.expand(b, -1)
            guided = [(ids.expand(b, -1), weight) for ids, weight in guide_ids]
            tokens = sample(self.model, text.expand(b, -1), cfg or SamplingConfig(), generator, prime=primed,
                            guides=guided, check=check).tokens  # fmt: skip
            pixels = self.image_tokenizer.decode_indices(tokens).clamp(-1, 1)
            images += to_images(pixels)
        return images
