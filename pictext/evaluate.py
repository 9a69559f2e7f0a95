"""Evaluation of CLIP models: zero-shot top-k, retrieval recall@k both ways, linear probes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pictext.clip.model import CLIP
from pictext.clip.zero_shot import DEFAULT_TEMPLATES, class_embeddings
from pictext.text import TextTooLongError


@torch.no_grad()
def zero_shot_topk(
    model: CLIP,
    images: np.ndarray,
    labels: Sequence[str],
    classes: Sequence[str],
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    ks: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """Top-k zero-shot accuracy from normalized image embeddings (N, E) and true class names."""
    class_emb = class_embeddings(model, classes, templates).float().cpu().numpy()  # (C, E)
    scores = images @ class_emb.T  # (N, C)
    target = np.array([list(classes).index(label) for label in labels])
    ranks = (scores > scores[np.arange(len(target)), target][:, None]).sum(1)  # classes scored above the truth
    return {f"top{k}": float(np.mean(ranks < k)) for k in ks if k <= len(classes)}


def retrieval_recall(images: np.ndarray, texts: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k both ways for paired rows (image i goes with text i), from normalized embeddings."""
    scores = images @ texts.T  # (N, N)
    truth = np.diag(scores)[:, None]
    i2t = (scores > truth).sum(1)  # texts ranked above the right one, per image
    t2i = (scores.T > truth).sum(1)
    out = {}
    for k in ks:
        out[f"image_to_text_r@{k}"] = float(np.mean(i2t < k))
        out[f"text_to_image_r@{k}"] = float(np.mean(t2i < k))
    return out


def recall_by_name(
    images: np.ndarray, names: Sequence[str], queries: np.ndarray, query_names: Sequence[str], ks=(1, 5, 10)
) -> dict[str, float]:
    """Text-to-image recall@k where a query hits if any image of its name (a skin-tone variant, say) is in the top k."""
    scores = queries @ images.T  # (Q, N)
    names = np.asarray(names)
    best_right = np.where(names[None, :] == np.asarray(query_names)[:, None], scores, -np.inf).max(1)
    ranks = (scores > best_right[:, None]).sum(1)  # images ranked above the best right one
    return {f"text_to_image_r@{k}": float(np.mean(ranks < k)) for k in ks}


def emoji_recall(model: CLIP, images: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Recall@1/5/10 by name: each distinct name is a query, `images` (normalized embeddings) the gallery."""
    from pictext.api import encode_texts

    unique = sorted(set(names))
    queries = encode_texts(unique, model=model, truncate=True)
    return {"queries": float(len(unique)), "images": float(len(names))} | recall_by_name(images, names, queries, unique)


def evaluate_emoji(model: CLIP, folder: str | os.PathLike, split: str = "held_out") -> dict[str, float]:
    """Text-to-image recall@1/5/10 by name over an emoji split (pictext data build emoji)."""
    from pictext.api import embed_images
    from pictext.data.emoji import named_images

    pngs, names = named_images(Path(folder), split)
    good, images, _ = embed_images(model, pngs)
    return emoji_recall(model, images, [names[i] for i in good])


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to two sets of feature rows (N, D): |mu_a - mu_b|^2 +
    Tr(S_a + S_b - 2 (S_a S_b)^(1/2)). In a small CLIP's space and on a few hundred pictures it ranks systems
    against each other and against real-versus-real baselines; it is not comparable to published FIDs
    (Inception features, 50,000 pictures)."""
    from scipy import linalg

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two (N, D) arrays of the same D and N >= 2, got {a.shape} and {b.shape}")
    mu, sigma_a, sigma_b = a.mean(0) - b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(sigma_a @ sigma_b)
    root = root.real if np.iscomplexobj(root) else root  # rounding leaves tiny imaginary parts
    return float(mu @ mu + np.trace(sigma_a + sigma_b - 2 * root))


def linear_probe(
    train: np.ndarray, train_labels: Sequence[str], test: np.ndarray, test_labels: Sequence[str], seed: int = 0
) -> float:
    """Accuracy of a logistic regression (scikit-learn) on frozen image embeddings."""
    from sklearn.linear_model import LogisticRegression

    probe = LogisticRegression(max_iter=2000, C=10.0, random_state=seed)
    probe.fit(train, list(train_labels))
    return float(probe.score(test, list(test_labels)))


Wording = tuple[str, str]  # (language, phrasing) of pictext.data.phrasings: ("ru", "caption"), ("en", "imperative")


def shapes_zero_shot(
    model: CLIP, wordings: Sequence[Wording] = (("en", "caption"),)
) -> dict[Wording, dict[str, dict[str, float]]]:
    """Zero-shot top-1 and top-5 over the 20 colour-shape classes of the shapes world, on 300 pictures of held-out
    combinations and 300 of seen ones (seed 7; embedded once), with the classes named in each of `wordings`
    ("a red circle", "красный круг", "нарисуй красный круг", ...): {wording: {"held_out" | "seen": scores}}.
    A wording whose class names the model's tokenizer cannot hold (Cyrillic spelt byte by byte by a BPE of
    English alone) is left out."""
    from pictext.api import embed_images
    from pictext.data.phrasings import Described, phrase
    from pictext.data.shapes import COLORS, SHAPES, ShapesWorld

    worlds = {split: ShapesWorld(split=split, seed=7, length=300) for split in ("held_out", "train")}
    embedded = {split: embed_images(model, [w[i][0] for i in range(len(w))])[1] for split, w in worlds.items()}
    results = {}
    for language, phrasing in wordings:
        names = {f"{c} {s}": phrase(Described(s, c), language, phrasing) for c in COLORS for s in SHAPES}
        try:
            results[language, phrasing] = {
                "held_out" if split == "held_out" else "seen": zero_shot_topk(
                    model, embedded[split], [names[w.label(i)] for i in range(len(w))], list(names.values()), ("{}",)
                )
                for split, w in worlds.items()
            }
        except TextTooLongError:
            continue
    return results


def evaluate_data(
    model: CLIP, spec: str, limit: int = 1000, image_column: str = "image", caption_column: str = "caption"
) -> dict[str, float]:
    """The evaluations that fit a dataset: shapes and digits are labelled (zero-shot, linear probe, recall);
    a folder or table of pairs gets recall@k on up to `limit` pairs."""
    from pictext.api import embed_images, encode_texts

    def embed(pairs: Sequence) -> tuple[np.ndarray, np.ndarray]:
        _, images, _ = embed_images(model, [image for image, _ in pairs])
        texts = encode_texts([caption for _, caption in pairs], model=model, truncate=True)
        return images, texts

    results: dict[str, float] = {}
    if spec == "emoji":
        from pictext import hub
        from pictext.data.emoji import ensure_emoji

        return evaluate_emoji(model, ensure_emoji(hub.home()))
    if spec == "shapes":
        from pictext.data.shapes import ShapesWorld

        for (language, _), by_split in shapes_zero_shot(model, (("en", "caption"), ("ru", "caption"))).items():
            suffix = "" if language == "en" else "_ru"
            for split, scores in by_split.items():
                results |= {f"zero_shot_{split}{suffix}_{k}": v for k, v in scores.items()}
        labelled = ShapesWorld(split="all", seed=1, length=900)
    elif spec == "digits":
        from pictext.data.pairs import DigitsPairs

        labelled = DigitsPairs()
        images, _ = embed([labelled[i] for i in range(len(labelled))])
        labels = [labelled.label(i) for i in range(len(labelled))]
        results |= zero_shot_topk(model, images, labels, DigitsPairs.WORDS, ("a handwritten {}", "the number {}"))
    else:
        from pictext.data.pairs import load_pairs

        pairs = load_pairs(spec, image_column=image_column, caption_column=caption_column)
        images, texts = embed([pairs[i] for i in range(min(limit, len(pairs)))])
        return retrieval_recall(images, texts)
    images, texts = embed([labelled[i] for i in range(min(limit, len(labelled)))])
    labels = [labelled.label(i) for i in range(len(images))]
    cut = int(0.7 * len(images))
    results["linear_probe"] = linear_probe(images[:cut], labels[:cut], images[cut:], labels[cut:])
    results |= retrieval_recall(images[-300:], texts[-300:])
    return results
