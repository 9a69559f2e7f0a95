"""WebDataset shards: written by webdataset's ShardWriter, read here by offset, interchangeable both ways."""

from __future__ import annotations

import io
import tarfile

import pytest
from PIL import Image

from pictext.cli import main
from pictext.data.emoji import build_emoji
from pictext.data.pairs import DatasetError, load_pairs
from pictext.data.shards import ShardPairs, write_shards
from pictext.images.decode import ImageError

from helpers import fake_tarball


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), (value, 0, 0)).save(buffer, "PNG")
    return buffer.getvalue()


def _samples(n: int):
    return [(f"s{i:03d}", _png(i * 10), "png", f"red {i}\nanother caption {i}\n") for i in range(n)]


def test_written_shards_read_back_here_and_in_webdataset(tmp_path):
    import webdataset as wds

    shards = write_shards(_samples(7), tmp_path / "out", "train", per_shard=3)
    assert [s.name for s in shards] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert not list((tmp_path / "out").glob(".*"))  # the temporary folder is gone
    ours = load_pairs(str(tmp_path / "out" / "train-{000000..000002}.tar"))
    assert isinstance(ours, ShardPairs) and len(ours) == 7
    image, caption = ours[4]
    assert image.getpixel((0, 0)) == (40, 0, 0) and caption in ("red 4", "another caption 4")
    theirs = list(wds.WebDataset([str(s) for s in shards], shardshuffle=False).decode("pil"))
    assert [s["__key__"] for s in theirs] == [f"s{i:03d}" for i in range(7)]
    assert theirs[4]["png"].getpixel((0, 0)) == ours[4][0].getpixel((0, 0))
    assert len(load_pairs(str(tmp_path / "out"))) == 7  # a folder of shards


def test_shards_written_by_webdataset_itself_are_read(tmp_path):
    import webdataset as wds

    with wds.TarWriter(str(tmp_path / "w.tar")) as sink:
        for i in range(4):
            sink.write({"__key__": f"dir/k{i}", "jpg": Image.new("RGB", (16, 16), (0, 200, 0)), "txt": f"green {i}"})
    pairs = ShardPairs(tmp_path / "w.tar")
    assert len(pairs) == 4 and pairs[2][1] == "green 2" and pairs[2][0].size == (16, 16)


def test_missing_captions_and_bad_images_in_a_shard(tmp_path):
    shard = tmp_path / "bad.tar"
    with tarfile.open(shard, "w") as tar:
        for name, data in [
            ("a.png", _png(1)),
            ("a.txt", b"ok"),
            ("b.png", _png(2)),
            ("c.png", _png(3)),
            ("c.txt", b" \n"),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(DatasetError, match=r"bad.tar: 2 sample\(s\) without a usable caption: b: no caption.*c: empty"):
        ShardPairs(shard)
    with pytest.raises(DatasetError, match="shard.s. not found: .*nope-1.tar"):
        ShardPairs(str(tmp_path / "nope-{1..2}.tar"))
    (tmp_path / "gz.tar").write_bytes(b"\x1f\x8b compressed or junk")
    with pytest.raises(DatasetError, match="not an uncompressed tar shard"):
        ShardPairs(tmp_path / "gz.tar")
    samples = _samples(4)
    samples[1] = ("s001", b"not a png at all", "png", "broken one")
    write_shards(samples, tmp_path / "mixed", "train", per_shard=10)
    pairs = ShardPairs(tmp_path / "mixed")
    with pytest.raises(ImageError, match=r"train-000000.tar:s001.png"):  # names the shard and the member
        pairs[1]


def test_train_on_shards_skips_an_unreadable_image(tmp_path, capsys):
    samples = _samples(8)
    samples[3] = ("s003", b"garbage", "png", "broken")
    write_shards(samples, tmp_path / "shards", "train", per_shard=4)
    out = tmp_path / "m.safetensors"
    argv = ["train", "clip", "--data", str(tmp_path / "shards"), "--steps", "2", "--batch-size", "8"]
    assert main([*argv, "--precision", "fp32", "--out", str(out)]) == 0
    assert out.is_file() and "train-000000.tar:s003.png" in capsys.readouterr().err


def test_emoji_build_as_shards(tmp_path):
    counts = build_emoji(tmp_path / "emoji", fake_tarball(tmp_path / "e.tgz"), per_shard=10)
    train = ShardPairs(tmp_path / "emoji" / "train")
    assert len(train) == counts["train"] and len(list((tmp_path / "emoji" / "train").glob("*.tar"))) >= 3
    assert (tmp_path / "emoji" / "held_out" / "labels.json").is_file()
