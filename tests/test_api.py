"""The public API and the command line on a tiny saved model; bad input gets a clear error and loses nothing."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch

import pictext
from pictext import checkpoint
from pictext.checkpoint import CheckpointError
from pictext.cli import main
from pictext.images import ImageError
from pictext.text import TextTooLongError


def test_load_is_a_module_with_the_openai_api(tiny_model_path):
    model = pictext.load(tiny_model_path)
    assert isinstance(model, torch.nn.Module) and not model.training
    tokens = pictext.tokenize(["a red circle", "a dog"], model=model)
    assert tokens.shape == (2, 32) and tokens.dtype == torch.long
    assert model.encode_text(tokens).shape == (2, 64)
    assert model.encode_image(torch.randn(1, 3, 32, 32)).shape == (1, 64)


def test_saved_model_reloads_identically(tiny_model_path, tmp_path):
    model = pictext.load(tiny_model_path)
    copy = pictext.load(pictext.save_clip(model, tmp_path / "copy.safetensors"))
    tokens = pictext.tokenize("a blue square", model=model)
    assert torch.equal(model.encode_text(tokens), copy.encode_text(tokens))
    assert copy.preprocess == model.preprocess and copy.config == model.config


def test_encode_and_classify(tiny_model_path, image_dir):
    model = pictext.load(tiny_model_path)
    paths = [image_dir / "red.png", image_dir / "grey.jpg", image_dir / "blue.png"]
    features = pictext.encode_images(paths, model=model)
    assert features.dtype == np.float32 and features.shape == (3, 64)
    assert np.allclose(np.linalg.norm(features, axis=1), 1, atol=1e-5)
    texts = pictext.encode_texts(["a cat", "a dog"], model=model)
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-5)
    probs = pictext.classify(paths, ["cat", "dog", "person"], model=model)
    assert probs.shape == (3, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_bad_labels_are_refused(tiny_model_path, image_dir):
    model = pictext.load(tiny_model_path)
    image = [image_dir / "red.png"]
    with pytest.raises(ValueError, match="label list is empty"):
        pictext.classify(image, [], model=model)
    with pytest.raises(ValueError, match="label 2 is empty"):
        pictext.classify(image, ["cat", " "], model=model)
    with pytest.raises(ValueError, match="'Cat' is given twice \\(positions 1 and 3\\)"):
        pictext.classify(image, ["cat", "dog", "Cat"], model=model)
    with pytest.raises(TextTooLongError, match=r"label 2 \('a very long label a very.*\.\.\.'\) is too long") as e:
        pictext.classify(image, ["cat", "a very long label " * 10], model=model)
    assert "truncate" not in str(e.value)  # no advice the CLI cannot follow


def test_corrupt_image_among_good_ones(tiny_model_path, image_dir):
    model = pictext.load(tiny_model_path)
    with pytest.raises(ImageError, match="broken.jpg"):
        pictext.encode_images(sorted(image_dir.iterdir()), model=model)


def test_wrong_files_as_checkpoints(tmp_path, tiny_model_path):
    vqgan = checkpoint.save(tmp_path / "vqgan.safetensors", {"codebook": torch.zeros(4, 2)}, "vqgan", {"config": {}})
    with pytest.raises(CheckpointError, match="'vqgan' checkpoint, not a 'clip' model"):
        pictext.load(vqgan)
    random = tmp_path / "random.bin"
    random.write_bytes(np.random.default_rng(0).bytes(4096))  # seeded: the same bytes every run
    with pytest.raises(CheckpointError, match="not a checkpoint pictext can read"):
        pictext.load(random)
    data = tiny_model_path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        pictext.load(truncated)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"w": _RunsCode()}, protocol=2))  # a pickle that would run code if unpickled normally
    with pytest.raises(CheckpointError, match="not a checkpoint pictext can read") as e:
        pictext.load(evil)
    assert "weights_only" not in str(e.value)  # never the advice to load it unsafely
    with pytest.raises(FileNotFoundError, match="did you mean openai/ViT-B-32, a published model"):
        pictext.load("ViT-B/32")
    with pytest.raises(FileNotFoundError, match="neither a file nor a model"):
        pictext.load("no-such-model")


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this should never run",))


def test_a_hostile_config_is_refused_before_anything_is_built(tiny_model_path, tmp_path):
    tensors, meta = checkpoint.load(tiny_model_path, "clip")
    huge = json.loads(json.dumps(meta))
    huge["config"]["vision"]["width"], huge["config"]["vision"]["layers"] = 8192, 64  # 206 GB if built
    bad = checkpoint.save(tmp_path / "huge.safetensors", tensors, "clip", huge)
    with pytest.raises(CheckpointError, match="builds a model of 196643 MiB from 0.9 MiB of weights"):
        pictext.load(bad)
    negative = json.loads(json.dumps(meta))
    negative["config"]["vision"]["width"] = -64
    bad = checkpoint.save(tmp_path / "negative.safetensors", tensors, "clip", negative)
    with pytest.raises(CheckpointError, match="its recorded config (is not a CLIP config|does not describe a model)"):
        pictext.load(bad)
    missing = {k: v for k, v in tensors.items() if not k.startswith("visual.")}
    bad = checkpoint.save(tmp_path / "missing.safetensors", missing, "clip", meta)
    with pytest.raises(CheckpointError, match="visual"):
        pictext.load(bad)


def test_cli_classify_json(tiny_model_path, image_dir, capsys):
    code = main(["classify", str(image_dir), "--labels", "cat, dog,person", "--model", str(tiny_model_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1  # one image was bad
    assert [r["image"].rsplit("/", 1)[1] for r in out["results"]] == ["blue.png", "grey.jpg", "red.png"]
    first = out["results"][0]["labels"]
    assert [x["prob"] for x in first] == sorted((x["prob"] for x in first), reverse=True)
    assert {x["label"] for x in first} == {"cat", "dog", "person"}
    assert len(out["errors"]) == 1 and "broken.jpg" in out["errors"][0]


def test_cli_encode_writes_good_files_and_reports_bad(tiny_model_path, image_dir, tmp_path, capsys):
    code = main(["encode", str(image_dir), "-o", str(tmp_path / "out"), "--model", str(tiny_model_path)])
    assert code == 1
    assert "broken.jpg" in capsys.readouterr().err
    features = np.load(tmp_path / "out" / "embeddings.npy")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert features.shape == (3, 64) and manifest["count"] == 3 and len(manifest["paths"]) == 3
    assert manifest["errors"][0]["path"].endswith("broken.jpg")


def test_cli_errors_name_the_argument(tiny_model_path, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["encode", str(tmp_path / "empty"), "-o", str(tmp_path / "o"), "--model", str(tiny_model_path)]) == 2
    assert "no images found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(["classify", str(tmp_path / "missing.png"), "--labels", "a,b", "--model", str(tiny_model_path)]) == 1
    assert "missing.png: no such file" in capsys.readouterr().err
    assert main(["classify", "x.png", "--labels", "", "--model", str(tiny_model_path)]) == 2
    assert "label list is empty" in capsys.readouterr().err
    assert main(["classify", "x.png", "--labels", "a", "--model", str(tmp_path / "nope.safetensors")]) == 2
    assert "neither a file nor a model" in capsys.readouterr().err
    assert main(["classify", str(tmp_path / "empty"), "--labels", "a,b", "--model", str(tiny_model_path)]) == 2
    assert "no images found" in capsys.readouterr().err
    nope = ["encode", str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "o"), "--model", str(tiny_model_path)]
    assert main(nope) == 2
    assert "nope.jpg" in capsys.readouterr().err and not (tmp_path / "o").exists()  # nothing written


def test_cli_models_and_convert(tiny_model_path, tmp_path, capsys, private_home):
    from pictext import hub

    assert main(["models"]) == 0
    listed = capsys.readouterr().out
    assert "mine" not in listed and all(p.stem in listed for p in hub.SHIPPED.glob("*.safetensors"))
    target = private_home / "models" / "mine.safetensors"
    assert main(["convert", str(tiny_model_path), "-o", str(target)]) == 0
    assert main(["models"]) == 0
    assert "mine" in capsys.readouterr().out
    assert main(["models", "build", "nothing"]) == 2 and "takes vqgan" in capsys.readouterr().err
    assert pictext.load("mine").config == pictext.load(tiny_model_path).config


def test_precision_auto_follows_the_hardware_and_bf16_stays_close(tiny_model_path, image_dir, monkeypatch, capsys):
    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr("pictext.training.cpu_has_fast_bf16", lambda native=native: native)
        assert pictext.load(tiny_model_path).precision == want
    monkeypatch.undo()
    fp32, bf16 = (pictext.load(tiny_model_path, precision=p) for p in ("fp32", "bf16"))
    images = [image_dir / "red.png", image_dir / "blue.png"]
    a, b = pictext.encode_images(images, model=fp32), pictext.encode_images(images, model=bf16)
    assert np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-5)  # normalized in float32 after a bf16 pass
    assert (a * b).sum(1).min() > 0.99 and not np.array_equal(a, b)  # close, and really computed in bf16
    assert np.array_equal(pictext.encode_images(images, model=bf16, precision="fp32"), a)  # a per-call override
    t = pictext.encode_texts(["a red circle"], model=bf16)
    assert (t @ pictext.encode_texts(["a red circle"], model=fp32).T).item() > 0.99
    with pytest.raises(ValueError, match="precision must be auto, fp32 or bf16"):
        pictext.load(tiny_model_path, precision="int8")
    argv = ["classify", str(image_dir / "red.png"), "--labels", "a,b", "--model", str(tiny_model_path)]
    assert main([*argv, "--precision", "bf16"]) == 0
    assert "pictext: inference in bf16" in capsys.readouterr().err
