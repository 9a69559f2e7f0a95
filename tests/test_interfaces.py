"""One Generator behind three interfaces: the same prompt, seed and settings give the same PNG bytes from the CLI,
the Python API and the page, for every method; and the page reads each method's defaults and limits from the
same settings dataclass the CLI's flags come from."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest
import torch
from fastapi.testclient import TestClient

import pictext
from pictext.cli import main
from pictext.generate.base import METHODS, method

pytestmark = pytest.mark.slow  # trains models / runs every interface: tens of seconds

PROMPT = "a red circle"
SETTINGS = {  # the same settings through every interface: (CLI flags, API keywords, page parameters)
    "vqgan-clip": ({"--steps": "3", "--size": "32", "--cutouts": "4", "--seed": "5", "--frame-every": "1"},
                   {"steps": 3, "size": 32, "cutouts": 4, "seed": 5, "frame_every": 1},
                   {"steps": "3", "size": "32", "cutouts": "4", "seed": "5", "frame_every": "1"}),
    "dalle": ({"--samples": "4", "--keep": "2", "--guidance": "2", "--seed": "1"},
              {"samples": 4, "keep": 2, "guidance_scale": 2.0, "seed": 1},
              {"samples": "4", "keep": "2", "guidance": "2", "seed": "1"}),
    "unclip": ({"--samples": "2", "--steps": "3", "--seed": "2"}, {"samples": 2, "steps": 3, "seed": 2},
               {"samples": "2", "steps": "3", "seed": "2"}),
}  # fmt: skip


@pytest.fixture(scope="module")
def model_files(tmp_path_factory, tiny_model_path):
    """Tiny random models of every kind, as files: the interfaces take the same names."""
    from pictext.clip.io import load_clip
    from pictext.dalle.io import save_dalle
    from pictext.dalle.model import DALLE, DALLEConfig
    from pictext.dalle.pipeline import DALLEPipeline
    from pictext.text import train_bpe_tokenizer
    from pictext.unclip.decoder import DecoderConfig, DiffusionDecoder
    from pictext.unclip.io import save_unclip
    from pictext.unclip.prior import DiffusionPrior, PriorConfig
    from pictext.vqgan import VQGAN, VQGANConfig
    from pictext.vqgan.io import save_vqgan

    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    vqgan = VQGAN(VQGANConfig(resolution=32, ch=32, ch_mult=(1, 2), attn_resolutions=(), z_channels=32, embed_dim=16,
                              n_embed=64)).eval()  # fmt: skip
    text = train_bpe_tokenizer(["a red circle", "a blue square"] * 5, vocab_size=300, context_length=8)
    dalle = DALLE(DALLEConfig(text_vocab=text.vocab_size, image_vocab=64, text_len=8, image_grid=16, width=32,
                              layers=1, heads=2))  # fmt: skip
    clip = load_clip(tiny_model_path)
    E, T = clip.config.embed_dim, clip.config.text.context_length
    prior = DiffusionPrior(PriorConfig(embed_dim=E, text_len=T, width=32, heads=2, layers=1))
    decoder = DiffusionDecoder(DecoderConfig(embed_dim=E, resolution=8, channels=(32, 32)))
    return {
        "clip": str(tiny_model_path),
        "vqgan": str(save_vqgan(vqgan, folder / "vqgan.safetensors")),
        "dalle": str(save_dalle(DALLEPipeline(dalle.eval(), text, vqgan), folder / "dalle.safetensors")),
        "unclip": str(save_unclip(prior.eval(), decoder.eval(), str(tiny_model_path), clip, folder / "u.safetensors")),
    }


def _models(name: str, files: dict) -> dict:
    return {m.name: [files[m.name]] if m.many else files[m.name] for m in method(name).MODELS}


@pytest.mark.parametrize("name", list(METHODS))
def test_the_cli_the_api_and_the_page_give_the_same_png_bytes(name, model_files, tmp_path, indexed_tiny):
    from pictext.server.app import Generation, create_app

    flags, keywords, params = SETTINGS[name]
    models = _models(name, model_files)
    argv = ["generate", PROMPT, "--method", name, "--out", str(tmp_path / "cli")]
    for model, spec in models.items():
        argv += [f"--{model}", spec[0] if isinstance(spec, list) else spec]
    assert main([*argv, *(x for pair in flags.items() for x in pair)]) == 0
    seed = keywords["seed"]
    cli = (tmp_path / "cli" / f"a-red-circle-{seed}.png").read_bytes()

    api = pictext.generate(PROMPT, method=name, **models, **keywords).png()

    app = create_app(indexed_tiny, generation=Generation({name: models}))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.get("/api/generate", params={"method": name, "prompt": PROMPT, **params})
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines[-1]["type"] == "done", lines[-1]
    page = base64.b64decode(lines[-1]["image"].split(",", 1)[1])

    assert cli == api == page
    assert json.loads((tmp_path / "cli" / f"a-red-circle-{seed}.json").read_text())["seed"] == seed
    other = pictext.generate(PROMPT, method=name, **models, **(keywords | {"seed": seed + 1})).png()
    assert other != api  # another seed, another picture: the equality above is not of constant outputs


@pytest.mark.parametrize("name", list(METHODS))
def test_the_page_offers_the_settings_dataclass_defaults_and_limits(name, model_files, indexed_tiny):
    from pictext.server.app import Generation, create_app
    from pictext.server.routes.generate import param_name

    app = create_app(indexed_tiny, generation=Generation({name: _models(name, model_files)}))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        offered = client.get("/api/generate/status").json()["settings"][name]
    for f in dataclasses.fields(method(name).Settings):
        if f.metadata.get("page") is False or not f.metadata.get("cli", True):
            assert param_name(f) not in offered, f.name
            continue
        spec = offered[param_name(f)]
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        assert spec["setting"] == f.name and spec["default"] == default and spec["low"] == f.metadata["low"]
        page = f.metadata["page"]
        assert spec["high"] == (f.metadata["high"] if page is True else page)


def test_each_method_is_offered_on_its_own(model_files, indexed_tiny):
    """A server with no VQGAN still offers DALL-E and unCLIP (each method whose models it has)."""
    from pictext.server.app import Generation, create_app

    models = {name: _models(name, model_files) for name in ("dalle", "unclip")}
    app = create_app(indexed_tiny, generation=Generation(models))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/api/generate/status").json()["methods"] == ["dalle", "unclip"]
        refused = client.get("/api/generate", params={"prompt": PROMPT, "method": "vqgan-clip"})
        assert refused.status_code == 404 and "vqgan-clip" in refused.json()["error"]


@pytest.fixture(scope="module")
def indexed_tiny(tmp_path_factory, tiny_model_path):
    from PIL import Image

    from pictext.search import Index

    folder = tmp_path_factory.mktemp("pictures")
    Image.new("RGB", (16, 16), "red").save(folder / "red.png")
    index = Index(tmp_path_factory.mktemp("index") / "i", model=str(tiny_model_path), create=True)
    index.add([folder], workers=0)
    return index


def test_a_russian_prompt_through_the_cli_the_api_and_the_page(model_files, tmp_path, indexed_tiny):
    """The lesson's readers type Russian: the file is named in Cyrillic (cut at whole characters), the PNG's
    prompt chunk and the JSON sidecar hold the prompt as typed (UTF-8, legible), and the three interfaces give
    the same bytes."""
    from PIL import Image

    from pictext.server.app import Generation, create_app

    prompt = "радуга на фоне ночного города"
    flags, keywords, params = SETTINGS["dalle"]
    models = _models("dalle", model_files)
    argv = ["generate", prompt, "--method", "dalle", "--out", str(tmp_path), "--dalle", models["dalle"],
            "--clip", models["clip"][0], *(x for pair in flags.items() for x in pair)]  # fmt: skip
    assert main(argv) == 0
    png = tmp_path / "радуга-на-фоне-1.png"  # 40 bytes at most, ending at a whole word
    assert png.is_file(), sorted(p.name for p in tmp_path.iterdir())
    with Image.open(png) as image:
        assert image.text["prompt"] == prompt and json.loads(image.text["pictext"])["prompt"] == prompt
    sidecar = png.with_suffix(".json").read_bytes().decode("utf-8")
    assert prompt in sidecar and json.loads(sidecar)["prompt"] == prompt

    api = pictext.generate(prompt, method="dalle", **models, **keywords).png()
    app = create_app(indexed_tiny, generation=Generation({"dalle": models}))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.get("/api/generate", params={"method": "dalle", "prompt": prompt, **params})
    page = base64.b64decode([json.loads(line) for line in response.text.splitlines()][-1]["image"].split(",", 1)[1])
    assert png.read_bytes() == api == page
