"""Evaluation metrics on hand-checkable embeddings, and `pictext eval` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pictext.cli import main
from pictext.clip.io import load_clip
from pictext.evaluate import evaluate_data, linear_probe, retrieval_recall, zero_shot_topk

from helpers import StubCLIP, unit


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


def test_zero_shot_topk_counts_the_classes_ranked_above_the_truth(tiny_model_path):
    stub = StubCLIP(load_clip(tiny_model_path))  # class "red" embeds as the red axis, and so on
    red, blue, green = (stub.embed_words([w]).numpy() for w in ("red", "blue", "green"))
    images = np.stack([red, unit(0.8 * red + 0.6 * blue), unit(0.8 * red + 0.5 * green + 0.3 * blue)])
    labels = ["red", "blue", "blue"]  # ranked 1st, 2nd and 3rd among the classes
    r = zero_shot_topk(stub, images, labels, ["red", "blue", "green"], templates=("a {}",), ks=(1, 2, 3))
    assert r == pytest.approx({"top1": 1 / 3, "top2": 2 / 3, "top3": 1.0})


def test_eval_cli_reports_what_the_library_computes(tiny_model_path, capsys):
    assert main(["eval", "--data", "digits", "--model", str(tiny_model_path), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert results == pytest.approx(evaluate_data(load_clip(tiny_model_path), "digits"), abs=1e-6)
    assert {"top1", "top5", "linear_probe", "image_to_text_r@1", "text_to_image_r@10"} <= set(results)


def test_frechet_distance_against_closed_forms():
    from pictext.evaluate import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6))
    assert abs(frechet_distance(a, a)) < 1e-6
    shift = np.array([3.0, 0, 0, 4.0, 0, 0])
    assert abs(frechet_distance(a, a + shift) - 25.0) < 1e-6  # same covariance: the squared mean distance
    scaled = frechet_distance(a, 2 * a)  # Tr(S + 4S - 2*2S) = Tr(S), plus the squared mean distance
    assert abs(scaled - (np.trace(np.cov(a, rowvar=False)) + (a.mean(0) @ a.mean(0)))) < 1e-6
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(a, a[:, :3])
