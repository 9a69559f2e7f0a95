# %% [markdown]
# # CLIP: pictures and captions in one space
#
# CLIP trains two encoders, one for pictures and one for text, so that a picture and its caption land close
# together and apart from everything else. Three things follow without any further training: classifying a
# picture by the caption it is closest to ("a cat / a dog / a person"), finding pictures by text, and
# measuring how well a picture matches a prompt (what VQGAN+CLIP and DALL-E's reranking use).
#
# This notebook runs offline on a laptop CPU with pictext's shipped models. Its last section uses a published
# CLIP when one has been fetched (`pictext models fetch openai/ViT-B-32`) and skips otherwise.

# %%
import dataclasses
import os
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's note when ipywidgets is not installed

import matplotlib.pyplot as plt
import numpy as np
import torch

import pictext
from pictext import published
from pictext.clip.recipe import RECIPES, build_model, recipe_data
from pictext.clip.train import CLIPTrainConfig, train_clip
from pictext.data.shapes import ShapesWorld
from pictext.files import home

torch.manual_seed(0)


def show(pictures, titles, size=2.0):
    """Pictures in a row, each above its title."""
    fig, axes = plt.subplots(1, len(pictures), figsize=(size * len(pictures), size + 0.6))
    for ax, picture, title in zip(np.atleast_1d(axes), pictures, titles):
        ax.imshow(picture)
        ax.set_title(title, fontsize=8, wrap=True)
        ax.axis("off")
    plt.show()


# %% [markdown]
# ## 1. Contrastive training, in a minute
#
# The shapes world is pictext's miniature dataset: coloured shapes drawn with their caption. A batch of N
# pictures and N captions gives an N x N matrix of similarities, and the loss (InfoNCE, both ways) asks each
# row and each column to pick its own pair on the diagonal. Here a small CLIP of the `shapes` recipe trains
# for 150 steps; its captions are English and Russian, as the shipped `shapes` CLIP's are.

# %%
recipe = dataclasses.replace(
    RECIPES["shapes"], shapes_length=3000, train=CLIPTrainConfig(steps=150, batch_size=64, lr=2e-3, warmup=20)
)
world = recipe_data(recipe)
model = build_model(recipe, world)
pictures, captions = zip(*[world[i] for i in range(8)])
show(pictures, captions)


# %%
def similarity(clip, pictures, captions):
    """Cosine similarities, pictures (rows) against captions (columns)."""
    clip.eval()
    with torch.no_grad():
        images = clip.encode_image(clip.preprocess.batch(list(pictures)), normalize=True)
        texts = clip.encode_text(clip.tokenizer(list(captions)), normalize=True)
    return (images @ texts.T).numpy()


before = similarity(model, pictures, captions)
losses = train_clip(model, world, recipe.train)
after = similarity(model, pictures, captions)

fig, axes = plt.subplots(1, 3, figsize=(15, 4))
axes[0].plot(losses)
axes[0].set(title="training loss", xlabel="step", ylabel="InfoNCE")
for ax, matrix, title in ((axes[1], before, "before training"), (axes[2], after, "after 150 steps")):
    image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="coolwarm")
    ax.set(title=f"similarity, {title}", xlabel="caption", ylabel="picture")
fig.colorbar(image, ax=axes[1:])
plt.show()
print(
    f"loss {losses[0]:.2f} -> {losses[-1]:.2f}; diagonal picked in "
    f"{(after.argmax(1) == np.arange(len(after))).sum()} of {len(after)} rows"
)

# %% [markdown]
# ## 2. Zero-shot classification, as the lesson does it
#
# The labels become captions ("a picture of a cat"), and the probabilities are a softmax over the picture's
# similarity to each. pictext's default model was trained on emoji and the shapes world; its emoji come from
# `pictext data build emoji` (npm's registry, once). Without them this section uses shapes.

# %%
emoji = Path(os.environ.get("PICTEXT_EMOJI") or home() / "data" / "emoji")
default = pictext.load()
if (emoji / "train").is_dir():
    from pictext.images.decode import decode_image  # as pictext reads files: transparency on white

    names = ["held_out/1f431.png", "held_out/1f415.png", "train/1f436.png", "train/1f9d1.png"]  # cat, dog x2, person
    pictures = [decode_image(emoji / name) for name in names]
    labels = ["a picture of a cat", "a picture of a dog", "a picture of a person"]
else:
    print(f"no emoji at {emoji}: `pictext data build emoji` builds them; the shapes world stands in")
    pictures = [world[i][0] for i in range(3)]
    labels = ["a red circle", "a blue square", "a green triangle"]
probabilities = pictext.classify(pictures, labels, model=default)

fig, axes = plt.subplots(1, len(pictures), figsize=(4 * len(pictures), 3.6))
for ax, picture, p in zip(axes, pictures, probabilities):
    ax.barh(labels, p)
    ax.set_xlim(0, 1)
    inset = ax.inset_axes([0.62, 0.05, 0.36, 0.5])
    inset.imshow(picture)
    inset.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# A miniature model, honestly: this CPU-sized CLIP is sure of the person and mostly right about the cat, while
# both dogs come out about even between "cat" and "dog" (cartoon animal faces of similar colours at 48 px).
# A published CLIP (section 5) separates them easily.
#
# ## 3. Finding pictures by text, and by a picture
#
# An index embeds every picture once; a query is one matrix product. Here 60 pictures of the shapes world are
# written to a folder and indexed with the default model.

# %%
import tempfile

folder = Path(tempfile.mkdtemp())
(folder / "pictures").mkdir()
for i in range(60):
    world[1000 + i][0].save(folder / "pictures" / f"{i:02d}.png")
index = pictext.Index(folder / "index", model=default)
index.add([folder / "pictures"])
for query in ("a red circle", "a blue square"):
    hits = index.search(query, k=6)
    show([plt.imread(h.path) for h in hits], [f"{h.score:.2f}" for h in hits], size=1.5)
    print(f"query: {query!r}")
hits = index.search(folder / "pictures" / "00.png", k=6)  # a picture as the query
show([plt.imread(h.path) for h in hits], [f"{h.score:.2f}" for h in hits], size=1.5)

# %% [markdown]
# ## 4. The embedding space, drawn in two dimensions
#
# The first two principal components of 200 pictures' embeddings and of their captions'. Pictures (o) and
# captions (x) of one colour gather in the same regions: the two towers were trained to agree.

# %%
english = ShapesWorld(size=64, max_shapes=2, length=200, seed=1)  # the default CLIP's text tower reads English
pairs = [english[i] for i in range(200)]
images = pictext.encode_images([p for p, _ in pairs], model=default)
texts = pictext.encode_texts([c for _, c in pairs], model=default)
both = np.concatenate([images, texts])
centred = both - both.mean(0)
_, _, axes_ = np.linalg.svd(centred, full_matrices=False)
points = centred @ axes_[:2].T
colours = {"red": "tab:red", "green": "tab:green", "blue": "tab:blue", "yellow": "gold"}
colour = [next((v for k, v in colours.items() if k in c), "grey") for _, c in pairs]
plt.figure(figsize=(6, 5))
plt.scatter(*points[: len(pairs)].T, c=colour, marker="o", s=18, label="pictures")
plt.scatter(*points[len(pairs) :].T, c=colour, marker="x", s=18, label="captions")
plt.legend()
plt.title("default CLIP: pictures (o) and captions (x), coloured by the caption's colour")
plt.show()

# %% [markdown]
# ## 5. With published weights
#
# OpenAI's CLIP ViT-B/32 classifies real photos; put some in `photos/` beside this notebook.

# %%
item = published.entry("openai/ViT-B-32")
if not item.fetched():
    print(
        f"skipped: {item.name} is not on this machine. Fetch it with `pictext models fetch {item.name}` "
        f"(about {item.approx_mb} MB), then run this cell again."
    )
elif not Path("photos").is_dir():
    print("skipped: put some photos in photos/ beside this notebook")
else:
    real = pictext.load(item.name)
    photos = sorted(Path("photos").iterdir())[:6]
    labels = ["a photo of a cat", "a photo of a dog", "a photo of a person"]
    for photo, p in zip(photos, pictext.classify(photos, labels, model=real)):
        print(photo.name, {label: round(float(x), 3) for label, x in zip(labels, p)})
