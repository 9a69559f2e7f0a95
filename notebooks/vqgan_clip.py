# %% [markdown]
# # VQGAN+CLIP: drawing by optimising a picture until CLIP agrees
#
# A VQGAN compresses a picture into a small grid of codes from a learned codebook and decodes it back. VQGAN+CLIP
# (as in Pixray and the lesson's notebooks) starts from a random grid, decodes it, shows random crops of the
# picture to CLIP, and moves the grid by gradient descent so that CLIP finds the picture closer to the prompt.
#
# This notebook runs offline on a laptop CPU with pictext's shipped models (a 32 px VQGAN for the shapes world,
# a 64 px one trained on emoji). Its last section uses taming-transformers' published VQGAN and OpenAI's CLIP
# when they have been fetched, and skips otherwise.

# %%
import os
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's note when ipywidgets is not installed

import matplotlib.pyplot as plt
import numpy as np
import torch

import pictext
from pictext import published
from pictext.data.shapes import ShapesWorld
from pictext.generate.models import load_vqgan_model
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
# ## 1. What the VQGAN keeps
#
# The default VQGAN turns a 64 px picture into a 16 x 16 grid of codes out of 512 and back. Pictures of the
# shapes world, their reconstructions, and how often each code is used over 300 pictures: a healthy codebook
# uses many of its codes.

# %%
vqgan = load_vqgan_model("vqgan")
world = ShapesWorld(seed=1, length=300)
pictures = [world[i][0].resize((64, 64)) for i in range(300)]
with torch.no_grad():
    out = vqgan(to_pixels(pictures[:8], 64))
show(pictures[:8], ["picture"] * 8)
show(to_images(out.reconstruction.clamp(-1, 1)), ["reconstruction"] * 8)

with torch.no_grad():
    codes = torch.cat([vqgan.encode(to_pixels(pictures[i : i + 50], 64)).indices for i in range(0, 300, 50)])
counts = np.bincount(codes.flatten().numpy(), minlength=vqgan.config.n_embed)
plt.figure(figsize=(10, 2.5))
plt.bar(np.arange(len(counts)), np.sort(counts)[::-1], width=1.0)
plt.title(f"code usage over 300 pictures: {(counts > 0).sum()} of {len(counts)} codes used")
plt.xlabel("codes, most used first")
plt.ylabel("positions")
plt.show()

# %% [markdown]
# ## 2. A drawing, frame by frame
#
# `pictext.generate` with the VQGAN+CLIP method: a prompt naming a shapes-world colour and shape is drawn with
# the shapes world's 32 px VQGAN and guided by its CLIP. A frame is kept every 10 steps; the CLIP score
# (cosine between the picture and the prompt) is the curve.

# %%
result = pictext.generate("a red circle", method="vqgan-clip", seed=3, steps=60)
show(result.frames, [f"step {10 * i}" for i in range(len(result.frames))])
plt.figure(figsize=(6, 3))
plt.plot([s.clip_score for s in result.steps])
plt.xlabel("step")
plt.ylabel("CLIP score")
plt.title("'a red circle'")
plt.show()

# %% [markdown]
# ## 3. Weighted and negative prompts
#
# Prompts take Pixray's weights: `text:weight`, several joined by `|`, and a negative weight pushes the
# picture away from a text. The same seed, with and without "red" pushed away.

# %%
plain = pictext.generate("a square", method="vqgan-clip", seed=5, steps=60)
pushed = pictext.generate("a square | red:-1", method="vqgan-clip", seed=5, steps=60)
show([plain.image, pushed.image], ["'a square'", "'a square | red:-1'"], size=2.5)

# %% [markdown]
# ## 4. With published weights: the lesson's portrait
#
# taming-transformers' ImageNet VQGAN (16,384 codes) guided by OpenAI's CLIP ViT-B/32, with the settings of the
# classic VQGAN+CLIP notebooks (the `classic` preset). About 5 s a step on a laptop CPU; a GPU draws it in a
# minute.

# %%
needed = [published.entry("taming/imagenet-f16-16384"), published.entry("openai/ViT-B-32")]
missing = [item for item in needed if not item.fetched()]
if missing:
    print("skipped: not on this machine yet; fetch, then run this cell again:")
    for item in missing:
        print(f"  pictext models fetch {item.name}    # about {item.approx_mb:,} MB")
else:
    steps = int(os.environ.get("PORTRAIT_STEPS", 300))
    portrait = pictext.generate(
        "a closeup watercolor portrait of young male teacher of literature with a book",
        method="vqgan-clip",
        vqgan=needed[0].name,
        clip=needed[1].name,
        steps=steps,
    )
    Path("portrait.png").write_bytes(portrait.png())
    show([portrait.image], [f"CLIP score {portrait.clip_score:.3f}"], size=5)
