# %% [markdown]
# # DALL-E: one transformer over the caption's tokens, then the picture's
#
# DALL-E turns a picture into a grid of codes with an image tokenizer (a dVAE in the paper, a VQGAN here), writes
# the caption's tokens and the picture's codes as one stream, and trains a GPT-style transformer to predict each
# next token. To draw, it reads a caption and samples the picture's codes one by one; many samples are drawn and
# CLIP picks the best.
#
# This notebook runs offline on a laptop CPU with pictext's shipped DALL-E (the shapes world, 32 px pictures of
# 8 x 8 codes). Its last section uses OpenAI's published dVAE when it has been fetched, and skips otherwise.

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's note when ipywidgets is not installed

import matplotlib.pyplot as plt
import numpy as np
import torch

import pictext
from pictext import published
from pictext.dalle.model import attention_mask
from pictext.data.shapes import ShapesWorld
from pictext.generate import prepare
from pictext.images.tensors import to_images, to_pixels


def show(pictures, titles, size=1.6):
    """Pictures in a row, each above its title."""
    fig, axes = plt.subplots(1, len(pictures), figsize=(size * len(pictures), size + 0.5))
    for ax, picture, title in zip(np.atleast_1d(axes), pictures, titles):
        ax.imshow(picture)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    plt.show()


# %% [markdown]
# ## 1. The stream: caption tokens, then image codes
#
# The caption becomes a start token, its BPE tokens, an end token and padding; the picture becomes an 8 x 8 grid
# of codes (out of 1,024) read row by row. The transformer sees the two as one sequence of 24 + 64 positions.

# %%
pipeline = prepare("dalle", "a red circle").pipeline
caption = "a red circle left of a blue square"
tokens, _ = pipeline.text(caption)
ids = [int(t) for t in tokens[0] if t != 0]
print("caption tokens:", ids)
print("as text:       ", [pipeline.text_tokenizer.decode([i]) for i in ids])

world = ShapesWorld(seed=2, max_shapes=2, length=10)
picture, words = next((p, c) for p, c in (world[i] for i in range(10)) if " and " in c or " of " in c)
with torch.no_grad():
    codes = pipeline.image_tokenizer.encode(to_pixels([picture], pipeline.resolution)).indices[0]
    decoded = to_images(pipeline.image_tokenizer.decode_indices(codes[None]).clamp(-1, 1))[0]
fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
axes[0].imshow(picture)
axes[0].set_title(words, fontsize=9)
axes[1].imshow(codes.numpy(), cmap="tab20")
for (r, c), v in np.ndenumerate(codes.numpy()):
    axes[1].text(c, r, str(v), ha="center", va="center", fontsize=6)
axes[1].set_title("its 8 x 8 image codes")
axes[2].imshow(decoded)
axes[2].set_title("the codes decoded")
for ax in axes:
    ax.axis("off")
plt.show()

# %% [markdown]
# ## 2. Which positions each position may attend to
#
# Every mask is causal (a position sees only earlier ones), and text positions see all the text before them.
# Image positions differ by layer kind: `full` sees every earlier code; DALL-E's sparse layers see the last
# row's worth of codes (`row`: its own row so far and the end of the row above), the codes of its own column
# (`column`), or a 3 x 3 neighbourhood (`conv`). Drawn for 6 text positions and a 4 x 4 grid (the stream's
# last position is never an input); white means "may attend", the red lines part text from image.

# %%
fig, axes = plt.subplots(1, 4, figsize=(16, 4.3))
for ax, kind in zip(axes, ("full", "row", "column", "conv")):
    ax.imshow(attention_mask(kind, 6, 4).numpy(), cmap="gray")
    ax.axhline(5.5, color="tab:red", lw=1)
    ax.axvline(5.5, color="tab:red", lw=1)
    ax.set(title=kind, xlabel="key position", ylabel="query position")
plt.show()

# %% [markdown]
# ## 3. Sampling, with and without guidance
#
# Classifier-free guidance runs the caption and an empty caption side by side and pushes the next-token
# distribution away from the empty one: `guidance_scale` 1 is none, the default is 3. Eight samples each, the
# same seed.

# %%
for scale in (1.0, 3.0):
    result = pictext.generate("a red circle", method="dalle", guidance_scale=scale, samples=8, keep=8, seed=0)
    show(result.samples, [f"{s:.2f}" for s in result.scores])
    print(f"guidance {scale}: mean score {np.mean(result.scores):.3f} (the two default rerankers' cosines, summed)")

# %% [markdown]
# ## 4. Sixteen samples, and the CLIP reranking that picks from them
#
# DALL-E's paper drew 512 samples and kept the ones CLIP scored highest. Here 16 are drawn and shown best
# first, each with its score (the cosines of the two default reranking CLIPs with the caption, summed);
# `keep=1` (the default) returns only the first.

# %%
result = pictext.generate("a green triangle", method="dalle", samples=16, keep=16, seed=1)
show(result.samples[:8], [f"#{i + 1}: {s:.2f}" for i, s in enumerate(result.scores[:8])])
show(result.samples[8:], [f"#{i + 9}: {s:.2f}" for i, s in enumerate(result.scores[8:])])

# %% [markdown]
# ### In Russian
#
# The shipped DALL-E was trained on captions in English and Russian, so a Russian caption draws the same
# picture. "зелёный треугольник" is a held-out combination in either language; a Russian caption is reranked by
# the `shapes` CLIP alone (the default CLIP's text tower reads English).

# %%
result = pictext.generate("зелёный треугольник", method="dalle", samples=16, keep=8, seed=1)
show(result.samples, [f"#{i + 1}: {s:.2f}" for i, s in enumerate(result.scores)])

# %% [markdown]
# ## 5. With published weights: OpenAI's dVAE
#
# DALL-E's own image tokenizer, a dVAE with 8,192 codes that turns a 256 px picture into 32 x 32 of them.
# pictext reads its `encoder.pkl` and `decoder.pkl` as data.

# %%
item = published.entry("openai/dvae")
if not item.fetched():
    print(
        f"skipped: {item.name} is not on this machine. Fetch it with `pictext models fetch {item.name}` "
        f"(about {item.approx_mb} MB), then run this cell again."
    )
else:
    from pictext.dalle.io import load_image_tokenizer

    dvae = load_image_tokenizer(f"dvae:{item.name}")
    big = picture.resize((256, 256))
    with torch.no_grad():
        codes = dvae.encode(to_pixels([big], 256)).indices
        back = to_images(dvae.decode_indices(codes).clamp(-1, 1))[0]
    show([big, back], ["a picture", f"through {codes.shape[-1]} x {codes.shape[-1]} dVAE codes"], size=3)
