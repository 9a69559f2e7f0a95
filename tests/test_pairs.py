"""Image-caption datasets from files: folders, tables, digits; bad captions and images reported by name."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from pictext.cli import main
from pictext.data.pairs import DatasetError, DigitsPairs, FolderPairs, TablePairs
from pictext.images.decode import ImageError


def _folder(tmp_path, n=6):
    root = tmp_path / "pairs"
    (root / "sub").mkdir(parents=True)
    for i in range(n):
        folder = root if i % 2 else root / "sub"
        Image.new("RGB", (20, 20), (40 * i, 10, 200)).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"picture {i}\nanother caption of {i}\n\n")
    return root


def test_folder_pairs_pick_one_caption_per_epoch(tmp_path):
    data = FolderPairs(_folder(tmp_path), seed=3)
    assert len(data) == 6
    seen = set()
    for epoch in range(8):
        data.set_epoch(epoch)
        image, caption = data[0]
        seen.add(caption)
    assert image.size == (20, 20) and len(seen) == 2
    data.set_epoch(5)
    first = data[0][1]
    data.set_epoch(5)
    assert data[0][1] == first  # deterministic per (seed, index, epoch): resume reads the same captions


def test_missing_or_empty_captions_are_named(tmp_path):
    root = _folder(tmp_path)
    (root / "sub" / "0.txt").unlink()
    (root / "1.txt").write_text("  \n")
    with pytest.raises(DatasetError, match=r"2 images .* have no caption: .*1\.png \(empty 1\.txt\).*0\.png \(no 0"):
        FolderPairs(root)


def test_tables_csv_tsv_jsonl_and_wrong_columns(tmp_path):
    _folder(tmp_path)
    (tmp_path / "a.csv").write_text("image,caption\npairs/1.png,a blue thing\npairs/sub/0.png,a red thing\n")
    (tmp_path / "a.tsv").write_text("image\tcaption\npairs/1.png\ta blue thing\n")
    (tmp_path / "a.jsonl").write_text(json.dumps({"image": "pairs/1.png", "caption": "a blue thing"}) + "\n")
    for name in ("a.csv", "a.tsv", "a.jsonl"):
        image, caption = TablePairs(tmp_path / name)[0]
        assert caption == "a blue thing" and image.size == (20, 20)
    (tmp_path / "bad.csv").write_text("file,text\npairs/1.png,x\n")
    with pytest.raises(DatasetError, match=r"no column 'image', 'caption'; its columns are \['file', 'text'\]"):
        TablePairs(tmp_path / "bad.csv")
    assert TablePairs(tmp_path / "bad.csv", "file", "text")[0][1] == "x"
    (tmp_path / "empty.csv").write_text("image,caption\npairs/1.png,\npairs/3.png,ok\n")
    with pytest.raises(DatasetError, match="empty caption on line"):
        TablePairs(tmp_path / "empty.csv")
    (tmp_path / "gone.csv").write_text("image,caption\nnowhere.png,a thing\n")
    with pytest.raises(ImageError, match="nowhere.png: no such file"):
        TablePairs(tmp_path / "gone.csv")[0]


def test_digits_are_bundled_and_captioned():
    data = DigitsPairs()
    image, caption = data[0]
    assert len(data) == 1797 and image.size == (32, 32) and data.label(0) == "zero"
    assert "zero" in caption or "0" in caption


def test_train_on_a_folder_skips_a_broken_image(tmp_path, capsys):
    root = _folder(tmp_path, n=8)
    (root / "3.png").write_bytes(b"broken")
    out = tmp_path / "m.safetensors"
    argv = ["train", "clip", "--data", str(root), "--steps", "2", "--batch-size", "8", "--precision", "fp32"]
    assert main([*argv, "--out", str(out)]) == 0
    assert out.is_file() and "skipping" in capsys.readouterr().err
    assert main(["train", "clip", "--data", str(tmp_path / "nothing.csv")]) == 2


def test_train_cli_locks_a_tower_and_refuses_a_wrong_lock(tmp_path, capsys):
    from pictext.clip.io import load_clip

    root = _folder(tmp_path, n=8)
    base = ["train", "clip", "--data", str(root), "--batch-size", "8", "--precision", "fp32", "--seed", "3"]
    runs = {"init": ["--steps", "0"], "free": ["--steps", "2"], "locked": ["--steps", "2", "--lock", "text"]}
    weights = {}
    for name, extra in runs.items():
        assert main([*base, *extra, "--out", str(tmp_path / f"{name}.safetensors")]) == 0
        weights[name] = load_clip(tmp_path / f"{name}.safetensors").state_dict()
    tower = [n for n, _ in load_clip(tmp_path / "init.safetensors").text_parameters()]
    assert "token_embedding.weight" in tower and "text_projection" not in tower
    assert all(torch.equal(weights["locked"][n], weights["init"][n]) for n in tower)
    assert not all(torch.equal(weights["free"][n], weights["init"][n]) for n in tower)
    for moved in ("text_projection", "visual.proj"):
        assert not torch.equal(weights["locked"][moved], weights["init"][moved])
    with pytest.raises(SystemExit):
        main([*base, "--lock", "both"])
    assert "invalid choice: 'both'" in capsys.readouterr().err
