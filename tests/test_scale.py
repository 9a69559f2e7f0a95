"""Beyond one machine: embedding shards (here and on a real two-node Ray cluster) and the on-disk index."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pictext.cli import main
from pictext.errors import MissingFileError, UsageError
from pictext.search import Index, bulk
from pictext.search import shards as sh
from pictext.search.ondisk import OnDiskIndexError, ShardedIndex, build, choose, parse_bytes

from helpers import write_synthetic

HERE = Path(__file__).parent


def _pictures(folder: Path, n: int, size: int = 48) -> list[Path]:
    """n distinct small pictures (a square of a colour and place per picture), alternately PNG and JPEG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    paths = []
    for i in range(n):
        image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
        x, y = (int(v) for v in rng.integers(0, size // 2, 2))
        image.paste(tuple(int(v) for v in rng.integers(0, 256, 3)), (x, y, x + size // 3, y + size // 3))
        path = folder / f"{i:05d}.{'png' if i % 2 else 'jpg'}"
        image.save(path)
        paths.append(path)
    return paths


def _tar(path: Path, pictures: list[Path], broken: bool = False) -> Path:
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for i, p in enumerate(pictures):
            add(f"{i:05d}{p.suffix}", p.read_bytes())
            add(f"{i:05d}.txt", f"picture {i}".encode())
            add(f"{i:05d}.json", json.dumps({"url": f"https://example.org/{i}{p.suffix}", "key": i}).encode())
        if broken:
            add("zzz.jpg", b"\xff\xd8 not a jpeg")
    return path


def _all_vectors(out: Path) -> tuple[np.ndarray, list[str], list]:
    plan = sh.Plan.read(out / "plan.json")
    vectors = np.concatenate([sh.read_vectors(out, s.name) for s in plan.shards]).astype(np.float32)
    keys, errors = [], []
    for s in plan.shards:
        table = sh.read_table(out, s.name)
        keys += table["key"]
        errors += table["error"]
    return vectors, keys, errors


def _index_vectors(index: Index) -> dict[str, np.ndarray]:
    records = [r for r in index.catalog.records() if r.status == "ok"]
    vectors = index.vectors.read([r.row for r in records])
    return {r.path: v for r, v in zip(records, vectors)}


# ---- sources and shards -----------------------------------------------------------------------------------------


def test_sources_folder_list_and_webdataset(tmp_path):
    pictures = _pictures(tmp_path / "pics", 7)
    out = tmp_path / "emb"
    folder = sh.source_shards(str(tmp_path / "pics"), out, shard_size=3)
    assert [s.name for s in folder] == ["00000", "00001", "00002"]
    assert [it.file for s in folder for it in sh.list_items(s)] == [str(p.resolve()) for p in pictures]
    listing = tmp_path / "list.txt"
    listing.write_text("# my pictures\n" + "\n".join(str(p) for p in pictures[:4]) + "\n", encoding="utf-8")
    assert [len(sh.list_items(s)) for s in sh.source_shards(str(listing), out, shard_size=3)] == [3, 1]
    _tar(tmp_path / "00000.tar", pictures[:3])
    _tar(tmp_path / "00001.tar", pictures[3:], broken=True)
    tars = sh.source_shards(str(tmp_path / "{00000..00001}.tar"), out)
    assert [s.kind for s in tars] == ["tar", "tar"]
    items = sh.list_items(tars[1])
    assert [it.key for it in items] == ["00000", "00001", "00002", "00003", "zzz"]
    assert items[0].location == f"https://example.org/0{pictures[3].suffix}" and items[0].caption == "picture 0"
    assert items[-1].location.endswith("00001.tar#zzz")  # no json: the tar and the key
    assert sh.read_bytes(items[1]) == pictures[4].read_bytes()  # read in place, by offset


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(MissingFileError, match="nothing-here"):
        sh.source_shards(str(tmp_path / "nothing-here"), tmp_path / "emb")
    _tar(tmp_path / "00000.tar", [])
    with pytest.raises(MissingFileError, match=r"00001\.tar: no such WebDataset shard \(1 of 2 missing\)"):
        sh.source_shards(str(tmp_path / "{00000..00001}.tar"), tmp_path / "emb")
    listing = tmp_path / "urls.txt"
    listing.write_text("https://example.org/a.jpg\n", encoding="utf-8")
    with pytest.raises(UsageError, match="is a URL.*img2dataset"):
        sh.source_shards(str(listing), tmp_path / "emb")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images"):
        sh.source_shards(str(tmp_path / "empty"), tmp_path / "emb")


def test_embed_here_equals_pictext_index_and_reruns_write_nothing(tmp_path, tiny_model_path):
    pictures = _pictures(tmp_path / "pics", 23)
    (tmp_path / "pics" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "emb"
    report = bulk.embed(tmp_path / "pics", out, str(tiny_model_path), shard_size=10, workers=0, precision="fp32")
    assert (report.shards, report.written, report.images, len(report.errors)) == (3, 3, 23, 1)
    vectors, keys, errors = _all_vectors(out)
    assert len(keys) == len(set(keys)) == 24
    broken = keys.index(str((tmp_path / "pics" / "broken.jpg").resolve()))
    assert errors[broken] is not None and not vectors[broken].any()  # its row kept, zero, its error said
    index = Index(tmp_path / "index", model=str(tiny_model_path), precision="fp32")
    index.add([tmp_path / "pics"], workers=0)
    reference = _index_vectors(index)
    index.close()
    for key, vector, error in zip(keys, vectors, errors):
        if error is None:
            np.testing.assert_allclose(vector, reference[key], atol=1e-3)
    assert set(reference) == {str(p.resolve()) for p in pictures}
    stamps = {f.name: f.stat().st_mtime_ns for f in out.iterdir() if f.is_file()}
    again = bulk.embed(tmp_path / "pics", out, str(tiny_model_path), shard_size=10, workers=0, precision="fp32")
    assert (again.skipped, again.written) == (3, 0)
    assert {f.name: f.stat().st_mtime_ns for f in out.iterdir() if f.is_file()} == stamps


def test_a_crash_mid_run_redoes_only_unwritten_shards(tmp_path, tiny_model_path, monkeypatch):
    _pictures(tmp_path / "pics", 12)
    out = tmp_path / "emb"
    real = bulk.write_shard
    calls = []

    def crash_on_second(out_, name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies here
        return real(out_, name, *args, **kwargs)

    monkeypatch.setattr(bulk, "write_shard", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        bulk.embed(tmp_path / "pics", out, str(tiny_model_path), shard_size=5, workers=0, precision="fp32")
    monkeypatch.setattr(bulk, "write_shard", real)
    first = (out / "00000.parquet").stat().st_mtime_ns
    assert not (out / "00001.parquet").exists()
    report = bulk.embed(tmp_path / "pics", out, str(tiny_model_path), shard_size=5, workers=0, precision="fp32")
    assert (report.skipped, report.written, report.images) == (1, 2, 7)
    assert (out / "00000.parquet").stat().st_mtime_ns == first
    assert len(_all_vectors(out)[1]) == 12


def test_a_rerun_with_another_source_or_model_is_refused(tmp_path, tiny_model_path, other_model_path):
    _pictures(tmp_path / "pics", 3)
    _pictures(tmp_path / "more", 3)
    out = tmp_path / "emb"
    bulk.embed(tmp_path / "pics", out, str(tiny_model_path), workers=0)
    with pytest.raises(UsageError, match="holds the embeddings of"):
        bulk.embed(tmp_path / "more", out, str(tiny_model_path), workers=0)
    with pytest.raises(UsageError, match="was embedded with"):
        bulk.embed(tmp_path / "pics", out, str(other_model_path), workers=0)


def test_embed_command_reads_webdataset_shards(tmp_path, tiny_model_path, capsys):
    pictures = _pictures(tmp_path / "pics", 6)
    _tar(tmp_path / "a.tar", pictures[:4])
    _tar(tmp_path / "b.tar", pictures[4:])
    pattern = str(tmp_path / "{a,b}.tar")
    assert main(["embed", pattern, "--out", str(tmp_path / "emb"), "--model", str(tiny_model_path),
                 "--workers", "0"]) == 0  # fmt: skip
    assert "2 written" in capsys.readouterr().out
    table = sh.read_table(tmp_path / "emb", "b")
    assert table["location"] == [f"https://example.org/{i}{pictures[4 + i].suffix}" for i in range(2)]
    assert table["caption"] == ["picture 0", "picture 1"]


# ---- the on-disk index ------------------------------------------------------------------------------------------


def _recall(index: ShardedIndex, vectors: np.ndarray, n_queries: int = 100, seed: int = 1) -> float:
    rng = np.random.default_rng(seed)
    queries = vectors[rng.choice(len(vectors), n_queries, replace=False)]
    queries = queries + rng.normal(scale=0.5 / np.sqrt(vectors.shape[1]), size=queries.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    hits = 0
    for q in queries:
        exact = set(np.argsort(-(vectors @ q))[:10].tolist())
        hits += len(exact & {r.id for r in index.search(q, 10)})
    return hits / (10 * n_queries)


def test_choice_follows_size_and_budget():
    small = choose(100_000, 512, parse_bytes("8GB"))
    assert small.factory.endswith("SQfp16") and not small.on_disk and small.refine == 1
    assert choose(100_000, 512, parse_bytes("1GB")).on_disk  # float16 codes over a sixteenth of the budget
    big = choose(100_000_000, 512, parse_bytes("8GB"))
    assert ",PQ" in big.factory and big.on_disk and big.refine > 1 and big.nlist == 1 << 15
    assert 100_000_000 * big.code_bytes <= parse_bytes("8GB") // 4
    assert parse_bytes("1.5GiB") == int(1.5 * 2**30) and parse_bytes("512mb") == 512 * 2**20
    with pytest.raises(UsageError, match="--memory"):
        parse_bytes("lots")


def test_index_build_in_memory_and_on_disk(tmp_path):
    vectors = write_synthetic(tmp_path / "emb", 12_000, 5_000)
    for memory, on_disk in (("1GB", False), ("1MB", True)):
        report = build(tmp_path / "emb", tmp_path / memory, parse_bytes(memory))
        assert report.on_disk is on_disk and report.vectors == 12_000 and report.recall_at_10 >= 0.9
        assert (tmp_path / memory / "lists.ivfdata").exists() is on_disk
        index = ShardedIndex(tmp_path / memory)
        top = index.search(vectors[7_777], 3)[0]
        assert (top.id, top.path, top.caption) == (7_777, "https://example.org/00001/2777.jpg", "caption 00001 2777")
        assert _recall(index, vectors) >= 0.85  # fresh queries: the recorded recall holds, within sampling noise


def test_index_build_refuses_unfinished_embeddings(tmp_path):
    write_synthetic(tmp_path / "emb", 300, 100)
    (tmp_path / "emb" / "00001.parquet").unlink()
    with pytest.raises(OnDiskIndexError, match="1 of 3 shards are not embedded yet"):
        build(tmp_path / "emb", tmp_path / "big")
    with pytest.raises(OnDiskIndexError, match="no plan.json"):
        build(tmp_path, tmp_path / "big")


@pytest.mark.slow
def test_on_disk_index_of_200k_vectors_and_the_search_command(tmp_path, capsys):
    """200,000 vectors under a 16 MB budget (float16 codes would take 51 MB): PQ codes, inverted lists merged on
    disk, recall@10 >= 0.9 at the chosen nprobe; `pictext search` answers from it with the default model."""
    from pictext.clip.embed import load, model_fingerprint

    fingerprint = model_fingerprint(load("default"))
    vectors = write_synthetic(tmp_path / "emb", 200_000, 50_000, fingerprint=fingerprint)
    assert main(["index", "build", str(tmp_path / "emb"), "--index", str(tmp_path / "big"), "--memory", "16MB"]) == 0
    said = capsys.readouterr().out
    assert "inverted lists on disk" in said and "PQ" in said
    index = ShardedIndex(tmp_path / "big")
    assert index.info["recall_at_10"] >= 0.9 and len(index) == 200_000
    assert _recall(index, vectors, n_queries=50) >= 0.85
    moved = tmp_path / "moved"
    shutil.move(tmp_path / "big", moved)  # the lists travel with the index file
    assert main(["search", "a red circle", "--index", str(moved), "-k", "5", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 5 and all(r["path"].startswith("https://example.org/") for r in results)
    assert all(r["caption"].startswith("caption ") for r in results)


# ---- pictext serve over an on-disk index ------------------------------------------------------------------------


def _client(index):
    from fastapi.testclient import TestClient

    from pictext.server.app import create_app

    return TestClient(create_app(index), base_url="http://127.0.0.1")


def test_serve_an_index_of_webdataset_shards(tmp_path, tiny_model_path):
    """The routes answer from an index built from WebDataset shards: results carry captions and URLs; a picture is
    read from its tar by offset, served only while its bytes are the ones embedded, and named by id alone."""
    pictures = _pictures(tmp_path / "pics", 60)
    _tar(tmp_path / "a.tar", pictures[:40])
    _tar(tmp_path / "b.tar", pictures[40:], broken=True)
    emb = tmp_path / "emb"
    bulk.embed(str(tmp_path / "{a,b}.tar"), emb, str(tiny_model_path), workers=0, precision="fp32")
    build(emb, tmp_path / "big", parse_bytes("1GB"))
    index = ShardedIndex(tmp_path / "big", precision="fp32")
    client = _client(index)
    assert client.get("/api/status").json() | {"busy": 0} == {"images": 60, "errors": 1, "model": str(tiny_model_path),
                                                               "busy": 0}  # fmt: skip
    upload = pictures[45].read_bytes()
    found = client.post("/api/search/image", files={"file": ("q.png", upload)}, data={"k": "3"}).json()["results"]
    top = found[0]
    assert (top["id"], top["caption"], top["name"]) == (45, "picture 5", f"5{pictures[45].suffix}")
    assert top["url"] == f"https://example.org/5{pictures[45].suffix}" and top["score"] > 0.99
    assert client.get("/api/image/45").content == upload  # the member's bytes, read in place
    thumb = client.get("/api/thumb/45")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    like = client.get("/api/similar/45", params={"k": 2}).json()
    assert like["like"] == {"id": 45, "name": top["name"]} and like["results"][0]["id"] == 45
    text = client.get("/api/search", params={"q": "a red square", "k": 5}).json()["results"]
    assert len(text) == 5 and all(r["caption"].startswith("picture ") for r in text)
    for url in ("/api/image/60", "/api/image/61", "/api/thumb/999", "/api/similar/60", "/api/image/-1"):
        assert client.get(url).status_code == 404, url  # the broken member (row 60), past the end, negative
    tar = bytearray((tmp_path / "b.tar").read_bytes())
    at = tar.index(upload) + len(upload) // 2
    tar[at] ^= 0xFF  # one byte of the member changed in place
    (tmp_path / "b.tar").write_bytes(bytes(tar))
    changed = client.get("/api/image/45")
    assert changed.status_code == 404 and "changed since it was embedded" in changed.json()["error"]
    assert client.get("/api/image/5").status_code == 200  # the other tar is untouched


def test_serve_an_index_of_a_folder_refuses_a_swapped_symlink(tmp_path, tiny_model_path, capsys):
    pictures = _pictures(tmp_path / "pics", 40)
    (tmp_path / "outside.png").write_bytes(pictures[3].read_bytes())  # same bytes, same hash, outside the folder
    emb = tmp_path / "emb"
    bulk.embed(tmp_path / "pics", emb, str(tiny_model_path), workers=0, precision="fp32")
    build(emb, tmp_path / "big", parse_bytes("1GB"))
    client = _client(ShardedIndex(tmp_path / "big", precision="fp32"))
    assert client.get("/api/image/3").content == pictures[3].read_bytes()
    pictures[3].unlink()
    os.symlink(tmp_path / "outside.png", pictures[3])
    refused = client.get("/api/image/3")
    assert refused.status_code == 404 and "no longer inside" in refused.json()["error"]
    assert main(["search", "a dog", "--index", str(tmp_path / "big"), "--model", "default"]) == 2
    assert "searched with that model; leave --model out" in capsys.readouterr().err


# ---- a real Ray cluster: a head and a worker node, separate processes on 127.0.0.1 ------------------------------


@pytest.fixture
def ray_cluster():
    pytest.importorskip("ray")
    from pictext.search.distributed import LocalCluster

    root = Path(tempfile.mkdtemp(prefix="pictext-ray-", dir="/tmp"))  # short: Ray's socket paths are limited
    try:
        with LocalCluster(root, nodes=2, cpus=1) as cluster:
            yield cluster
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _embed_process(cluster, source: Path, out: Path, model: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "pictext", "embed", str(source), "--out", str(out), "--model", str(model),
               "--ray", cluster.address, "--shard-size", "100", "--batch-size", "50",
               "--precision", "fp32"]  # fmt: skip
    return subprocess.Popen(command, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip


def _wait_for_shards(out: Path, n: int, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while len(list(out.glob("*.parquet"))) < n:
        if process.poll() is not None:
            raise AssertionError(f"the job ended early: {process.stdout.read().decode()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {n} shards after {timeout} s")
        time.sleep(0.2)


@pytest.mark.slow
def test_ray_two_nodes_equal_one_machine_and_survive_a_killed_worker_and_driver(tmp_path, ray_cluster,
                                                                               tiny_model_path):  # fmt: skip
    """2,000 pictures in 20 shards on a head and a worker node: the vectors equal `pictext index`'s on this
    machine; killing the worker node mid-job, the job still finishes with every picture embedded once; killing
    the driver, the rerun finishes and rewrites none of the shards written before."""
    pictures = _pictures(tmp_path / "pics", 2_000)
    index = Index(tmp_path / "index", model=str(tiny_model_path), precision="fp32")
    index.add([tmp_path / "pics"], workers=0)
    reference = _index_vectors(index)
    index.close()

    def check(out: Path) -> None:
        vectors, keys, errors = _all_vectors(out)
        assert sorted(keys) == sorted(str(p.resolve()) for p in pictures)  # each once, none missing
        assert not any(errors)
        worst = max(float(np.abs(v - reference[k]).max()) for k, v in zip(keys, vectors))
        assert worst <= 1e-3, worst

    # 1. a worker node killed once the job has written its first shard
    out = tmp_path / "emb"
    job = _embed_process(ray_cluster, tmp_path / "pics", out, tiny_model_path)
    _wait_for_shards(out, 1, job)
    ray_cluster.kill(1)  # the worker node, with whatever it was running
    said = job.communicate(timeout=600)[0].decode()
    assert job.returncode == 0, said[-3000:]
    check(out)

    # 2. the driver killed mid-job (on the head node alone now): the rerun finishes the rest, rewriting nothing
    out = tmp_path / "emb2"
    job = _embed_process(ray_cluster, tmp_path / "pics", out, tiny_model_path)
    _wait_for_shards(out, 2, job)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    done = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in out.glob("*.parquet")}
    assert 2 <= len(done) < 20
    rerun = _embed_process(ray_cluster, tmp_path / "pics", out, tiny_model_path)
    said = rerun.communicate(timeout=600)[0].decode()
    assert rerun.returncode == 0, said[-3000:]
    assert f"{len(done)} done before" in said
    assert {n: ((out / n).stat().st_ino, (out / n).stat().st_mtime_ns) for n in done} == done
    check(out)


def test_a_machine_with_another_model_file_is_refused(tmp_path, tiny_model_path, other_model_path):
    """A model actor whose file differs from the plan's stops the job (its vectors would live in another space)."""
    _pictures(tmp_path / "pics", 3)
    plan_model = tmp_path / "model.safetensors"
    shutil.copy(tiny_model_path, plan_model)
    out = tmp_path / "emb"
    sh.open_plan(str(tmp_path / "pics"), out, str(plan_model), 10, "fp32", True)
    shutil.copy(other_model_path, plan_model)  # the file changed under the plan
    with pytest.raises(sh.ShardError, match="not the one the plan was made with"):
        bulk.embed(tmp_path / "pics", out, str(plan_model), workers=0)
