"""Evaluation metrics on hand-checkable embeddings, and `pictext eval` end to end."""

from __future__ import annotations

import json

import numpy as np

from pictext.cli import main
from pictext.evaluate import linear_probe, retrieval_recall


def test_retrieval_recall_counts_ranks_both_ways():
    images = np.eye(4, dtype=np.float32)
    texts = np.eye(4, dtype=np.float32)[[0, 1, 3, 2]]  # texts 2 and 3 swapped: images 2, 3 find the wrong one first
    texts[2] += 0.5 * np.eye(4, dtype=np.float32)[2]  # ...but their own text second
    texts[3] += 0.5 * np.eye(4, dtype=np.float32)[3]
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    r = retrieval_recall(images, texts, ks=(1, 2))
    assert r["image_to_text_r@1"] == 0.5 and r["image_to_text_r@2"] == 1.0
    assert r["text_to_image_r@1"] == 0.5 and r["text_to_image_r@2"] == 1.0


def test_linear_probe_separates_separable_classes():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (50, 5)) + 4, rng.normal(0, 1, (50, 5)) - 4])
    y = ["a"] * 50 + ["b"] * 50
    order = rng.permutation(100)
    x, y = x[order], [y[i] for i in order]
    assert linear_probe(x[:70], y[:70], x[70:], y[70:]) == 1.0
    assert linear_probe(x[:70], y[:70], x[70:], ["a" if v == "b" else "b" for v in y[70:]]) == 0.0


def test_eval_cli_on_digits(shapes_model, capsys):
    assert main(["eval", "--data", "digits", "--model", str(shapes_model[0]), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert {"top1", "top5", "linear_probe", "text_to_image_r@10"} <= set(results)
    assert results["top5"] >= results["top1"] and 0 <= results["linear_probe"] <= 1
