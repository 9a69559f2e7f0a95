# %% [markdown]
# # unCLIP (DALL-E 2): a prior and a decoder in CLIP's space
#
# unCLIP draws in two steps. A diffusion **prior** turns a caption's CLIP text embedding into a CLIP *image*
# embedding: where in CLIP's space a picture of that caption would lie. A diffusion **decoder** turns an image
# embedding into pixels. Because the decoder only needs an image embedding, it also makes variations of a
# picture (its own embedding, new noise) and pictures between two (along the arc between their embeddings).
#
# This notebook runs offline on a laptop CPU with pictext's shipped unCLIP for the shapes world (`unclip-ru`,
# 32 px, in the space of the `shapes` CLIP, which reads English and Russian): `prepare` picks it for a caption
# naming a colour and a shape. Its last section uses Kakao Brain's Karlo (DALL-E 2's architecture at full size)
# when it has been fetched, and skips otherwise.

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's note when ipywidgets is not installed

import matplotlib.pyplot as plt
import numpy as np
import torch

import pictext
from pictext import published
from pictext.data.shapes import ShapesWorld
from pictext.generate import prepare
from pictext.unclip.train import image_embeddings


def show(pictures, titles, size=1.6):
    """Pictures in a row, each above its title."""
    fig, axes = plt.subplots(1, len(pictures), figsize=(size * len(pictures), size + 0.5))
    for ax, picture, title in zip(np.atleast_1d(axes), pictures, titles):
        ax.imshow(picture)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    plt.show()


# %% [markdown]
# ## 1. The prior: from the caption's embedding to a picture's
#
# In CLIP's space a caption and a picture of it are close, but not the same point. For six captions, the
# cosine of the *text* embedding and of the *prior's predicted image* embedding with the embedding of a real
# picture of that caption: the prior should land nearer the picture than the text does (less so for a
# caption that leaves size and place open, such as "a red circle": one picture is only one of many it fits).

# %%
pipeline = prepare("unclip", "a red circle").pipeline
world = ShapesWorld(seed=3, length=60)
pairs = [world[i] for i in range(60)]
chosen = list({caption: (picture, caption) for picture, caption in pairs}.values())[:6]
pictures, captions = [p for p, _ in chosen], [c for _, c in chosen]
true = image_embeddings(pipeline.clip, pictures)
text = torch.from_numpy(pictext.encode_texts(captions, model=pipeline.clip))
predicted = torch.nn.functional.normalize(
    pipeline.image_embeddings_for(captions, steps=64, generator=torch.Generator().manual_seed(0)), dim=-1
)
rows = np.arange(len(captions))
plt.figure(figsize=(9, 3.5))
plt.bar(rows - 0.2, (text * true).sum(-1), width=0.4, label="text embedding")
plt.bar(rows + 0.2, (predicted * true).sum(-1), width=0.4, label="prior's image embedding")
plt.xticks(rows, captions, rotation=20, ha="right", fontsize=8)
plt.ylabel("cosine with the real picture's")
plt.legend()
plt.show()

# %% [markdown]
# ## 2. The decoder: from the predicted embedding to pixels
#
# The same six captions drawn: prior, then decoder (`pipeline.draw` takes any image embeddings).

# %%
drawn = pipeline.draw(predicted, generator=torch.Generator().manual_seed(0))
show(pictures, ["real"] * len(captions), size=2.6)
show(drawn, captions, size=2.6)

# %% [markdown]
# ### In Russian
#
# The same model reads Russian: "зелёный треугольник" (green triangle) is a combination it never saw in
# training, in either language.

# %%
result = pictext.generate("зелёный треугольник", method="unclip", samples=6, seed=0)
show(result.samples, [result.records[0]["unclip"]] * 6, size=2.6)

# %% [markdown]
# ## 3. Variations of a picture, and the pictures between two
#
# A variation decodes the picture's own CLIP embedding from new noise: what CLIP "saw" is kept, the rest is
# drawn anew. An interpolation decodes points along the great circle between two pictures' embeddings, all from
# the same noise, so that only the embedding changes along the strip.

# %%
source = pictures[0]
variations = pipeline.vary(source, n=6, seed=0)
show([source, *variations], ["source"] + [f"variation {i + 1}" for i in range(6)])
strip = pipeline.interpolate(pictures[0], pictures[1], n=8, seed=0)
show(strip, [f"{w:.2f}" for w in np.linspace(0, 1, 8)])

# %% [markdown]
# ## 4. With published weights: Karlo
#
# Karlo v1 alpha (Kakao Brain) is DALL-E 2's architecture at full size: a 1 B parameter prior, a 64 px decoder
# and super-resolution to 256 px. About 5 minutes a picture on a laptop CPU, seconds on a GPU.

# %%
item = published.entry("kakaobrain/karlo-v1-alpha")
if not item.fetched():
    print(
        f"skipped: {item.name} is not on this machine. Fetch it with `pictext models fetch {item.name}` "
        f"(about {item.approx_mb:,} MB), then run this cell again."
    )
else:
    result = pictext.generate(
        "a closeup watercolor portrait of young male teacher of literature with a book",
        method="unclip",
        unclip=item.name,
    )
    show([result.image], ["Karlo"], size=5)
