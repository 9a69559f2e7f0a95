"""The registry of published weights, proved without the weights: for every entry, the reference code's model
(open_clip, transformers, taming-transformers, OpenAI's dall_e) built at the published size on the meta
device, and pictext's loader mapping its state-dict names and shapes onto pictext's model exactly: every
tensor used, none left over, none missing. Parameter counts are printed for README's table."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import warnings

import pytest
import torch

from pictext import published
from pictext.clip.convert import _IGNORED_KEYS, hf_to_openai, infer_config
from pictext.clip.model import CLIP, CLIPConfig
from pictext.config import from_dict, to_dict

ENTRIES = published.registry()


def shapes(sd: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def meta_state(build) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build().state_dict()


def reference_state(item: published.Published) -> dict[str, torch.Tensor]:
    """The reference implementation's state dict at the published size, in the names its files use."""
    ref = item.reference
    if "open_clip" in ref:
        import open_clip

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = open_clip.create_model(ref["open_clip"], force_quick_gelu=ref["quick_gelu"], device="meta")
        return model.state_dict()
    if "transformers" in ref:
        from transformers import CLIPConfig as HFConfig
        from transformers import CLIPModel

        return meta_state(lambda: CLIPModel(HFConfig(**ref["transformers"])))
    if "taming" in ref:
        return _taming_state(ref["taming"])
    if "diffusers" in ref:
        return _karlo_state(ref)
    if "rudalle" in ref:
        return _rudalle_state(item.config, ref.get("dwt", False))
    if "dall_e" in ref:
        import dall_e

        encoder, decoder = meta_state(dall_e.Encoder), meta_state(dall_e.Decoder)
        return {f"encoder.{k}": v for k, v in encoder.items()} | {f"decoder.{k}": v for k, v in decoder.items()}
    raise AssertionError(f"{item.name}: no reference")


def _rudalle_state(config: dict, dwt: bool = False) -> dict[str, torch.Tensor]:
    """ruDALL-E's DalleModel and its Sber VQGAN (rudalle's GumbelVQ; with `dwt`, its DWT variant, saved whole as
    `get_vae(dwt=True)` loads it), as its two files name their tensors."""
    from helpers import omegaconf_like, reference_module

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script's deprecation, in ruDALL-E's gelu_jit
        DalleModel = reference_module("rudalle.dalle.model").DalleModel
    GumbelVQ = reference_module("rudalle.vae.model").GumbelVQ
    params = config["vqgan"]["params"]
    transformer = meta_state(lambda: DalleModel(device="meta", embedding_dropout_prob=0.1, attention_dropout_prob=0.1,
                                                output_dropout_prob=0.1, **config["rudalle"]))  # fmt: skip
    ddconfig = omegaconf_like(params["ddconfig"])
    vqgan = meta_state(lambda: GumbelVQ(ddconfig, params["n_embed"], params["embed_dim"], dwt=dwt))
    prefix = "vqgan.model." if dwt else "vqgan."
    return {f"transformer.{k}": v for k, v in transformer.items()} | {f"{prefix}{k}": v for k, v in vqgan.items()}


def _karlo_state(ref: dict) -> dict[str, torch.Tensor]:
    """diffusers' parts from their configs and transformers' CLIP towers, as the folder's subfolders name them."""
    import diffusers
    from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel
    from transformers import (
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    classes = {"prior": diffusers.PriorTransformer, "text_proj": UnCLIPTextProjModel,
               "decoder": diffusers.UNet2DConditionModel, "super_res_first": diffusers.UNet2DModel,
               "super_res_last": diffusers.UNet2DModel}  # fmt: skip
    out = {}
    for part, config in ref["diffusers"].items():
        out |= {
            f"{part}.{k}": v for k, v in meta_state(lambda part=part, config=config: classes[part](**config)).items()
        }
    text = meta_state(lambda: CLIPTextModelWithProjection(CLIPTextConfig(**ref["text_encoder"])))
    out |= {f"text_encoder.{k}": v for k, v in text.items()}
    if "image_encoder" in ref:
        image = meta_state(lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**ref["image_encoder"])))
        out |= {f"image_encoder.{k}": v for k, v in image.items()}
    return out


def _karlo_pictext(item: published.Published, ref: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """pictext's Karlo at the published configs: the diffusers classes its loader builds from each config.json,
    and its CLIP from the text (and image) encoder through the Hugging Face import."""
    from pictext.unclip.karlo import _MODELS, _diffusers_class, hf_towers

    ours, mapped = {}, {}
    for part, config in item.reference["diffusers"].items():
        model = meta_state(lambda part=part, config=config: _diffusers_class(_MODELS[part]).from_config(config))
        ours |= {f"{part}.{k}": v for k, v in model.items()}
        mapped |= {k: v for k, v in ref.items() if k.startswith(part + ".")}
    towers = [
        {k.split(".", 1)[1]: v for k, v in ref.items() if k.startswith(f"{t}_encoder.")} for t in ("text", "image")
    ]
    hf = hf_towers(towers[0], item.reference["text_encoder"], towers[1] or None, item.reference.get("image_encoder"))
    config, clip = hf_to_openai(*hf)
    config = from_dict(CLIPConfig, to_dict(config))
    ours |= {f"clip.{k}": v for k, v in meta_state(lambda: CLIP(config)).items()}
    mapped |= {f"clip.{k}": v for k, v in clip.items()}
    return ours, mapped


def _taming_state(params: dict) -> dict[str, torch.Tensor]:
    """taming's VQModel parts (its Lightning class needs pytorch-lightning; its modules need only torch)."""
    from taming.modules.diffusionmodules.model import Decoder, Encoder
    from taming.modules.vqvae.quantize import VectorQuantizer

    dd = params["ddconfig"]

    def parts() -> torch.nn.ModuleDict:
        return torch.nn.ModuleDict({
            "encoder": Encoder(**dd), "decoder": Decoder(**dd),
            "quantize": VectorQuantizer(params["n_embed"], params["embed_dim"], beta=0.25),
            "quant_conv": torch.nn.Conv2d(dd["z_channels"], params["embed_dim"], 1),
            "post_quant_conv": torch.nn.Conv2d(params["embed_dim"], dd["z_channels"], 1),
        })  # fmt: skip

    return meta_state(parts)


def pictext_state(item: published.Published, ref: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """(pictext's model's state dict on meta, the reference's mapped by pictext's loader for this format)."""
    if item.family == "clip":
        if item.format == "huggingface":
            config, mapped = hf_to_openai(
                ref, {"text_config": {"hidden_act": "quick_gelu"}, **item.reference["transformers"]}
            )
        else:
            mapped = {k: v for k, v in ref.items() if k not in _IGNORED_KEYS}
            config = infer_config(mapped, item.activation)
            inferred = json.loads(json.dumps(to_dict(config)))
            assert inferred == item.config, f"{item.name}: the registry's config is not what the loader infers"
        config = from_dict(CLIPConfig, to_dict(config))  # within pictext's bounds for a file's config
        return meta_state(lambda: CLIP(config)), mapped
    if item.family == "vqgan":
        from pictext.vqgan.convert import config_from_taming
        from pictext.vqgan.model import VQGAN

        config = config_from_taming(item.reference["taming"], "taming.models.vqgan.VQModel")
        return meta_state(lambda: VQGAN(config)), ref
    if item.family == "unclip":
        return _karlo_pictext(item, ref)
    if item.family == "dalle":
        from pictext.dalle.convert import config_from_rudalle, rudalle_to_pictext
        from pictext.dalle.model import DALLE
        from pictext.vqgan.convert import config_from_taming, dwt_layout
        from pictext.vqgan.model import VQGAN

        config = config_from_rudalle(**item.config["rudalle"])
        transformer = {k.split(".", 1)[1]: v for k, v in ref.items() if k.startswith("transformer.")}
        mapped = {f"transformer.{k}": v for k, v in rudalle_to_pictext(transformer, config).items()}
        vqgan_config = config_from_taming(item.config["vqgan"]["params"], item.config["vqgan"]["target"])
        vqgan, vqgan_config = dwt_layout({k[6:]: v for k, v in ref.items() if k.startswith("vqgan.")}, vqgan_config)
        assert vqgan_config.wavelet == item.reference.get("dwt", False)
        ours = {f"transformer.{k}": v for k, v in meta_state(lambda: DALLE(config)).items()}
        ours |= {f"vqgan.{k}": v for k, v in meta_state(lambda: VQGAN(vqgan_config)).items()}
        return ours, mapped | {f"vqgan.{k}": v for k, v in vqgan.items()}
    if item.family == "dvae":
        from pictext.dalle.dvae import DVAE, DVAEConfig

        config = from_dict(DVAEConfig, item.reference["dall_e"])
        return meta_state(lambda: DVAE(config)), ref
    raise AssertionError(item.family)


# ruCLIP's sizes are in the config.json that comes with its weights, which nothing offline can read: its entries
# are checked against the ruclip package's list of models and loaded from a stand-in in the hub's cache
# (tests/test_rudalle.py), its loader against the package on random weights
AT_SIZE = sorted(name for name, item in ENTRIES.items() if item.format != "ruclip")


@pytest.mark.parametrize("name", AT_SIZE)
def test_the_reference_at_its_published_size_maps_exactly_onto_pictexts_model(name):
    item = ENTRIES[name]
    ours, mapped = pictext_state(item, reference_state(item))
    assert shapes(ours) == shapes(mapped)  # every tensor used, none left over, none missing, same shapes
    params = sum(
        v.numel()
        for k, v in ours.items()
        if not k.startswith("clip.visual.") or "image_encoder" in item.reference or item.family != "unclip"
    )  # a Karlo text encoder's stand-in image tower is not Karlo's
    print(f"{name}: {params / 1e6:.1f} M parameters")
    assert params > 10_000_000  # published sizes, not a tiny stand-in


def test_every_entry_is_complete_and_checked():
    assert {"openai/ViT-B-32", "openai/RN50", "laion/ViT-B-32", "openai/clip-vit-base-patch32",
            "taming/imagenet-f16-16384", "taming/imagenet-f16-1024", "openai/dvae"} <= set(ENTRIES)  # fmt: skip
    for name, item in ENTRIES.items():
        assert item.files and item.licence and item.approx_mb > 0, name
        for spec in item.files:
            assert (spec.url is None) != (spec.hub is None), f"{name}: {spec.name} needs a url or a hub repo"
            assert spec.max_bytes >= min(item.approx_mb * 1_000_000, 1 << 20), name
            if spec.url is not None and "openaipublic" in spec.url:  # OpenAI's URLs carry their SHA-256
                assert spec.sha256 is not None and spec.sha256 in spec.url, name


# ---- the downloader, through real HTTP on 127.0.0.1 ----------------------------------------------------------------


class Files(http.server.BaseHTTPRequestHandler):
    """Serves `files` by path, honouring Range; `cut` paths send half and hang up on their first request, `stall`
    paths answer headers then wait, `lying` paths send more than their Content-Length would allow."""

    files: dict[str, bytes] = {}
    cut: set[str] = set()
    stall: set[str] = set()
    unsized: set[str] = set()  # sent without Content-Length, to the end of the connection
    requests: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:
        Files.requests.append((self.path, self.headers.get("Range")))
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        if self.path not in self.unsized:
            self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if self.path in self.stall:
            time.sleep(3)
            return
        if self.path in self.cut:
            self.cut.discard(self.path)
            self.wfile.write(data[start : len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data[start:])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Files.files, Files.cut, Files.stall, Files.unsized, Files.requests = {}, set(), set(), set(), []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_cut_download_resumes_and_its_hash_passes(server, tmp_path):
    data = os.urandom(3 << 20)
    Files.files["/model.pt"], Files.cut = data, {"/model.pt"}
    target = tmp_path / "model.pt"
    assert published.download(f"{server}/model.pt", target, sha(data), 4 << 20, progress=False) == sha(data)
    assert target.read_bytes() == data and not target.with_name("model.pt.part").exists()
    assert Files.requests[1] == ("/model.pt", f"bytes={len(data) // 2}-")  # the second request resumed


def test_a_wrong_hash_a_404_a_stall_and_an_oversize_file_are_refused(server, tmp_path):
    data = os.urandom(1 << 20)
    Files.files |= {"/a": data, "/slow": data, "/big": data, "/unsized": data}
    Files.stall, Files.unsized = {"/slow"}, {"/unsized"}
    target = tmp_path / "a"
    with pytest.raises(published.FetchError, match="SHA-256 .* removed, never loaded"):
        published.download(f"{server}/a", target, "0" * 64, 2 << 20, progress=False)
    assert not target.exists() and not tmp_path.joinpath("a.part").exists()
    with pytest.raises(published.FetchError, match="answered 404"):
        published.download(f"{server}/missing", target, None, 2 << 20, progress=False)
    start = time.monotonic()
    with pytest.raises(published.FetchError, match="no answer after 2 tries"):
        published.download(f"{server}/slow", target, None, 2 << 20, timeout=0.5, retries=1, progress=False)
    assert time.monotonic() - start < 5
    with pytest.raises(published.FetchError, match="1,048,576 bytes, more than the 524,288 the registry allows"):
        published.download(f"{server}/big", target, None, 1 << 19, progress=False)
    with pytest.raises(published.FetchError, match="more than the 524,288 bytes the registry allows; stopped"):
        published.download(f"{server}/unsized", target, None, 1 << 19, progress=False)  # stopped at the limit
    assert not target.exists() and not tmp_path.joinpath("a.part").exists()


def test_a_checkpoint_fetched_from_the_server_loads_as_the_file_it_was_served_from(
    server, tmp_path, monkeypatch, capsys
):
    """A registry entry of the test's, served on 127.0.0.1: `pictext models fetch`, then the name loads the same
    model as the file; before the fetch, the name says how to fetch it."""
    import open_clip

    import pictext
    from pictext.cli import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = {"vision_cfg": {"layers": 1, "width": 64, "patch_size": 16, "image_size": 32},
                 "text_cfg": {"layers": 1, "width": 64, "context_length": 16}, "embed_dim": 32}  # fmt: skip
        reference = open_clip.create_model("ViT-B-32", **small)
    torch.save(reference.state_dict(), tmp_path / "served.pt")
    data = (tmp_path / "served.pt").read_bytes()
    Files.files["/tiny.pt"] = data
    registry = {"test/tiny": {"family": "clip", "format": "open_clip", "about": "a tiny OpenCLIP", "licence": "MIT",
                              "approx_mb": 1, "activation": "gelu",
                              "files": [{"name": "tiny.pt", "url": f"{server}/tiny.pt", "sha256": sha(data),
                                         "max_bytes": len(data)}]}}  # fmt: skip
    (tmp_path / "registry.json").write_text(json.dumps(registry))
    monkeypatch.setattr(published, "REGISTRY", tmp_path / "registry.json")
    monkeypatch.setenv("PICTEXT_HOME", str(tmp_path / "home"))
    assert main(["classify", str(tmp_path / "served.pt"), "--labels", "a,b", "--model", "test/tiny"]) == 2
    assert "pictext models fetch test/tiny" in capsys.readouterr().err
    assert main(["models", "fetch", "test/tiny"]) == 0
    assert "test/tiny: fetched" in capsys.readouterr().out
    assert main(["models", "list", "--published"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if "test/tiny" in x)
    assert " here " in line and "not fetched" not in line
    fetched = pictext.load("test/tiny", precision="fp32")
    original = pictext.load(tmp_path / "served.pt", activation="gelu", precision="fp32")
    texts = ["a red circle", "a blue square"]
    assert (pictext.encode_texts(texts, model=fetched) == pictext.encode_texts(texts, model=original)).all()


HUB_CHILD = """
import json, sys
from pathlib import Path
import pictext
from pictext import published
published.REGISTRY = Path(sys.argv[1])
path = published.fetch("test/hub", progress=False)
model = pictext.load("test/hub", precision="fp32")
print(json.dumps({"path": str(path), "row": pictext.encode_texts(["a red circle"], model=model)[0].tolist()}))
"""


def test_a_hub_entry_is_read_from_the_hub_cache_offline(tmp_path):
    """A Hugging Face CLIPModel folder placed in huggingface_hub's cache layout, fetched with HF_HUB_OFFLINE=1
    (huggingface_hub reads its settings at import: a child process), loads as the folder it came from."""
    from transformers import CLIPConfig as HFConfig
    from transformers import CLIPModel

    import pictext

    torch.manual_seed(0)
    tower = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 1}
    small = {"text_config": tower, "vision_config": tower | {"patch_size": 32}, "projection_dim": 32}
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--test-org--tiny-clip"
    snapshot = repo / "snapshots" / commit
    CLIPModel(HFConfig(**small)).eval().save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    files = [{"name": n, "hub": "test-org/tiny-clip", "revision": None, "max_bytes": 50 << 20}
             for n in ("config.json", "model.safetensors")]  # fmt: skip
    registry = {"test/hub": {"family": "clip", "format": "huggingface", "about": "a tiny HF CLIP", "licence": "MIT",
                             "approx_mb": 1, "files": files}}  # fmt: skip
    (tmp_path / "registry.json").write_text(json.dumps(registry))
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PICTEXT_HOME": str(tmp_path / "home"),
           "PICTEXT_QUIET": "1"}  # fmt: skip
    result = subprocess.run([sys.executable, "-c", HUB_CHILD, str(tmp_path / "registry.json")], env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["path"] == str(snapshot)  # read where huggingface_hub keeps it, not copied
    expected = pictext.encode_texts(["a red circle"], model=pictext.load(snapshot, precision="fp32"))[0]
    assert out["row"] == pytest.approx(expected.tolist(), abs=1e-6)


def test_no_network_and_a_full_disk_are_clear_errors_and_leave_nothing(tmp_path, monkeypatch):
    import errno

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: as offline as a test can be
    target = tmp_path / "model.pt"
    with pytest.raises(published.FetchError, match="no answer after 2 tries .* check the network"):
        published.download(f"http://127.0.0.1:{port}/model.pt", target, None, 1 << 20, retries=1, progress=False)
    assert not target.exists()

    def full(*args, **kwargs):  # the write of a chunk, on a disk that has no room left
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(published, "_transfer", full)
    with pytest.raises(published.FetchError, match="cannot write the download \\(No space left on device\\)"):
        published.download(f"http://127.0.0.1:{port}/model.pt", target, None, 1 << 20, progress=False)
    assert not target.exists()


class FakeHub(http.server.BaseHTTPRequestHandler):
    """The two routes huggingface_hub uses to fetch a file (HEAD and GET /REPO/resolve/REVISION/FILE), with the
    headers the Hub sends: the commit, and the file's SHA-256 as its ETag; `lying` files list another hash."""

    files: dict[str, bytes] = {}
    lying: set[str] = set()

    def _answer(self) -> bytes | None:
        parts = self.path.split("?")[0].strip("/").split("/")
        name = parts[-1]
        if len(parts) < 5 or parts[2] != "resolve" or name not in self.files:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()
            return None
        data = self.files[name]
        listed = hashlib.sha256(b"another file" if name in self.lying else data).hexdigest()
        self.send_response(200)
        self.send_header("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")
        self.send_header("ETag", f'"{listed}"')
        self.send_header("X-Linked-Etag", f'"{listed}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return data

    def do_HEAD(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        data = self._answer()
        if data is not None:
            self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


HUB_FETCH = """
import json, sys
from pathlib import Path
from pictext import published
published.REGISTRY = Path(sys.argv[1])
try:
    print(json.dumps({"path": str(published.fetch("test/hub", progress=False))}))
except published.FetchError as e:
    print(json.dumps({"error": str(e)}))
"""


def test_a_hub_entry_is_fetched_through_huggingface_hub_and_checked_against_the_hubs_hash(tmp_path):
    """huggingface_hub pointed at a fake hub on 127.0.0.1 (HF_ENDPOINT, read at its import: a child process):
    the files arrive in its cache and load; a file whose content differs from the hash the hub lists is refused."""
    from transformers import CLIPConfig as HFConfig
    from transformers import CLIPModel

    import pictext

    torch.manual_seed(0)
    tower = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 1}
    model = CLIPModel(HFConfig(text_config=tower, vision_config=tower | {"patch_size": 32}, projection_dim=32))
    model.eval().save_pretrained(tmp_path / "served")
    FakeHub.files = {n: (tmp_path / "served" / n).read_bytes() for n in ("config.json", "model.safetensors")}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    files = [{"name": n, "hub": "test-org/tiny-clip", "revision": None, "max_bytes": 50 << 20} for n in FakeHub.files]
    registry = {"test/hub": {"family": "clip", "format": "huggingface", "about": "a tiny HF CLIP", "licence": "MIT",
                             "approx_mb": 1, "files": files}}  # fmt: skip
    (tmp_path / "registry.json").write_text(json.dumps(registry))
    try:
        outcomes = []
        for lying, home in ((set(), "hf"), ({"model.safetensors"}, "hf-lied-to")):
            FakeHub.lying = lying
            env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{httpd.server_address[1]}",
                   "HF_HOME": str(tmp_path / home), "PICTEXT_HOME": str(tmp_path / f"{home}-pictext")}  # fmt: skip
            env.pop("HF_HUB_OFFLINE", None)
            result = subprocess.run([sys.executable, "-c", HUB_FETCH, str(tmp_path / "registry.json")], env=env,
                                    capture_output=True, text=True, timeout=300)  # fmt: skip
            assert result.returncode == 0, result.stderr[-2000:]
            outcomes.append(json.loads(result.stdout.splitlines()[-1]))
    finally:
        httpd.shutdown()
    fetched = pictext.load(outcomes[0]["path"], precision="fp32")
    served = pictext.load(tmp_path / "served", precision="fp32")
    texts = ["a red circle"]
    assert (pictext.encode_texts(texts, model=fetched) == pictext.encode_texts(texts, model=served)).all()
    assert "the hub lists" in outcomes[1]["error"] and "not used" in outcomes[1]["error"]
