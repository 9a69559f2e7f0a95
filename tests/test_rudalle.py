"""ruDALL-E on pictext: the transformer, the Sber VQGAN and the YouTokenToMe tokenizer, each exact against Sber's
reference code (`rudalle`, `youtokentome`; installed --no-deps by the Makefile) on small random configs."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest
import torch

from pictext.checkpoint import CheckpointError
from pictext.dalle.convert import config_from_rudalle, from_rudalle, rudalle_to_pictext
from pictext.dalle.model import DALLE

from helpers import omegaconf_like, reference_module

# an 8x8 image grid: wider than the reach of ruDALL-E's 11x11 conv mask, so a wrong kernel shows
SMALL = dict(num_layers=4, hidden_size=64, num_attention_heads=4, text_seq_length=10, image_tokens_per_dim=8,
             vocab_size=50 + 10, image_vocab_size=24, embedding_dropout_prob=0.1, attention_dropout_prob=0.1,
             output_dropout_prob=0.1)  # fmt: skip


def reference(seed: int = 0, **params) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script's deprecation, in ruDALL-E's gelu_jit
        DalleModel = reference_module("rudalle.dalle.model").DalleModel
    torch.manual_seed(seed)
    model = DalleModel(device="cpu", **(SMALL | params)).eval()
    with torch.no_grad():  # its layer norms start at 1 and 0: random ones, so a swapped norm cannot pass
        for name, p in model.named_parameters():
            if "layernorm" in name or name.startswith("to_logits.0"):
                p.add_(torch.randn_like(p) * 0.3)
    return model


def stream(seed: int = 1, batch: int = 3, text_len: int = 10, image_tokens: int = 64):
    """Text ids with BOS, words, EOS and pads (0) of varying lengths, then image codes."""
    g = torch.Generator().manual_seed(seed)
    text = torch.zeros(batch, text_len, dtype=torch.long)
    for b in range(batch):
        n = 2 + b * 2
        text[b, 0], text[b, 1 : n + 1], text[b, n + 1] = 2, torch.randint(4, 50, (n,), generator=g), 3
    image = torch.randint(0, SMALL["image_vocab_size"], (batch, image_tokens), generator=g)
    return text, image


def reference_logits(model, text, image) -> torch.Tensor:
    input_ids = torch.cat([text, image], dim=1)
    total = model.total_seq_length
    mask = torch.tril(torch.ones(input_ids.shape[0], 1, total, total))
    with torch.no_grad():
        return model(input_ids, mask)[0]


@pytest.mark.parametrize("sandwich", [False, True], ids=["plain", "sandwich"])
@pytest.mark.parametrize("pb_relax", [False, True], ids=["softmax", "pb-relax"])
def test_logits_equal_rudalles(sandwich, pb_relax):
    params = dict(cogview_sandwich_layernorm=sandwich, cogview_pb_relax=pb_relax)
    ref = reference(**params)
    ours = from_rudalle(ref.state_dict(), **SMALL, **params)
    assert ours.config.layer_attention() == ["row", "column", "row", "conv"]
    text, image = stream()
    for n in (64, 23, 0):  # the whole stream, a prefix of the image, the text alone
        want = reference_logits(ref, text, image[:, :n])
        with torch.no_grad():
            got = ours.logits(text, image[:, :n])
        assert got.shape == want.shape == (3, 10 + n, 60 + 24)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_logits_equal_rudalles_without_its_sparse_masks():
    """Masks off: ruDALL-E's row, column and conv masks replaced by plain causal ones, pictext's layers all full."""
    ref = reference(seed=2, cogview_sandwich_layernorm=True)
    causal = torch.tril(torch.ones_like(ref.transformer.row_mask))
    for name in ("row_mask", "col_mask", "conv_mask"):
        setattr(ref.transformer, name, causal)
    config = dataclasses.replace(config_from_rudalle(**SMALL, cogview_sandwich_layernorm=True),
                                 attention=("full",), last_attention=None)  # fmt: skip
    ours = DALLE(config).eval()
    state = {k: v for k, v in ref.state_dict().items() if not k.endswith("_mask")}
    ours.load_state_dict(rudalle_to_pictext(state, config))
    text, image = stream(seed=3)
    with torch.no_grad():
        got = ours.logits(text, image)
    torch.testing.assert_close(got, reference_logits(ref, text, image), rtol=0, atol=1e-5)
    # and the masks matter: the sparse model on the same weights differs
    sparse = from_rudalle(reference(seed=2, cogview_sandwich_layernorm=True).state_dict(), **SMALL,
                          cogview_sandwich_layernorm=True)  # fmt: skip
    with torch.no_grad():
        assert (sparse.logits(text, image) - got).abs().max() > 1e-3


def test_a_file_is_read_as_data_and_a_wrong_mask_refused(tmp_path):
    ref = reference(seed=4, cogview_sandwich_layernorm=True, cogview_pb_relax=True)
    torch.save(ref.state_dict(), tmp_path / "pytorch_model.bin")
    params = dict(SMALL, cogview_sandwich_layernorm=True, cogview_pb_relax=True)
    ours = from_rudalle(tmp_path / "pytorch_model.bin", **params)
    text, image = stream(seed=5)
    with torch.no_grad():
        torch.testing.assert_close(ours.logits(text, image), reference_logits(ref, text, image), rtol=0, atol=1e-5)
    state = ref.state_dict()
    state["transformer.row_mask"] = torch.tril(torch.ones_like(state["transformer.row_mask"]))
    with pytest.raises(CheckpointError, match="row_mask"):
        from_rudalle(state, **params)
    with pytest.raises(CheckpointError, match="blocks|unexpected|missing|sandwich|ln_attn_out"):
        from_rudalle(ref.state_dict(), **SMALL)  # sandwich tensors in the file, none in the config


def test_unknown_parameters_and_v2_checkpoints_are_refused():
    with pytest.raises(ValueError, match="unknown ruDALL-E parameters.*num_heads"):
        config_from_rudalle(**SMALL, num_heads=4)
    with pytest.raises(ValueError, match="v2"):
        config_from_rudalle(**SMALL, hf_version="v2")
    with pytest.raises(ValueError, match="required"):
        config_from_rudalle(hidden_size=64)


# ---- the YouTokenToMe tokenizer ------------------------------------------------------------------------------------

RU = (
    "маленький большой синий красный зелёный жёлтый крест круг квадрат треугольник слева справа от на фоне "
    "радуга ночного города нарисуй один два три кот собака человек фото изображение картинка море закат небо "
    "лес дом улица зимой летом старый новый ёжик щука объём съезд подъезд эхо Москва Санкт-Петербург"
).split()
EN = (
    "a small big blue red green yellow cross circle square triangle left of right on the plain background "
    "rainbow night city draw one two three cat dog person photo picture sea sunset sky forest house street "
    "winter summer old new hedgehog pike"
).split()
ODD = ["42", "2026", "3.14", "—", "«", "»", "!", "?", ",", ".", "(", ")", "😀", "🐈", "中文", "naïve", "Ünïcödé",
       "\u2581", "x\u00a0y", "tab\there", "ΑΒΓ"]  # fmt: skip


def corpus(n: int, seed: int) -> list[str]:
    """n lines of Russian and English words with digits, punctuation, emoji, rare scripts, odd whitespace and
    capitals: what the BPE learns from, and (another seed) what it is checked on."""
    import random

    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = [rng.choice(rng.choice((RU, RU, EN, ODD))) for _ in range(rng.randint(1, 14))]
        words = [w.capitalize() if rng.random() < 0.15 else w.upper() if rng.random() < 0.03 else w for w in words]
        seps = [rng.choice((" ", " ", " ", "  ", "\t", "")) for _ in words]
        line = "".join(w + s for w, s in zip(words, seps))
        lines.append(rng.choice(("", " ", "  ")) + line + rng.choice(("", " ", "\t")))
    return lines


@pytest.fixture(scope="module")
def bpe_model(tmp_path_factory):
    yttm = pytest.importorskip("youtokentome")
    folder = tmp_path_factory.mktemp("yttm")
    (folder / "train.txt").write_text("\n".join(corpus(3000, seed=0)) + "\n")
    yttm.BPE.train(data=str(folder / "train.txt"), model=str(folder / "bpe.model"), vocab_size=600, coverage=0.995)
    return folder / "bpe.model"


def test_yttm_ids_equal_youtokentomes_on_1200_lines(bpe_model):
    import youtokentome as yttm

    from pictext.text.yttm import YTTMTokenizer

    reference = yttm.BPE(str(bpe_model))
    ours = YTTMTokenizer.from_file(bpe_model, lower=False)
    assert ours.vocab_size == reference.vocab_size() == 600
    lines = corpus(1200, seed=1) + ["", "   ", "\u2581\u2581", "😀😀 x 😀", "中文中文", "слово\u00a0word"]
    want = reference.encode(lines, output_type=yttm.OutputType.ID)
    got = [ours.encode(line) for line in lines]
    assert got == want
    assert sum(ours.unk_token_id in ids for ids in got) > 20  # characters outside the alphabet were met
    assert sum(len(ids) for ids in got) < sum(len(line) for line in lines) / 2  # and merges were made
    ignore = [0, 1, 2, 3]
    assert [ours.decode(ids) for ids in want[:200]] == reference.decode(want[:200], ignore_ids=ignore)


def test_yttm_layout_is_rudalles_and_ruclips(bpe_model, monkeypatch):
    """BOS, the ids, EOS, zeros to the context length, in lower case: as ruDALL-E's encode_text (texts that fit)
    and as ruCLIP's processor (which keeps EOS last in a text too long)."""
    import huggingface_hub
    import youtokentome as yttm

    from pictext.text.yttm import YTTMTokenizer

    monkeypatch.setattr(huggingface_hub, "cached_download", None, raising=False)  # imported, never called
    wrapper = reference_module("rudalle.tokenizer").YTTMTokenizerWrapper(yttm.BPE(str(bpe_model)))
    processor = reference_module("ruclip.processor").RuCLIPProcessor(str(bpe_model), text_seq_length=24)
    ours = YTTMTokenizer.from_file(bpe_model, context_length=128)
    texts = ["Радуга на фоне ночного города", "маленький синий крест слева от красного круга", "A photo of a CAT"]
    for text in texts:
        assert torch.equal(ours(text)[0], wrapper.encode_text(text.lower(), 128))
    long = " ".join(corpus(40, seed=2))
    assert torch.equal(
        ours([long, *texts], context_length=24), torch.stack([processor.encode_text(t) for t in [long, *texts]])
    )
    assert ours.decode(ours(texts[0])[0].tolist()) == texts[0].lower()


def test_a_malformed_yttm_model_is_refused_by_line(bpe_model, tmp_path):
    from pictext.text.yttm import YTTMTokenizer

    lines = bpe_model.read_text().split("\n")
    n_chars = int(lines[0].split()[0])
    cases = [(0, "x y", "line 1"), (2, lines[1], "repeats an id"), (n_chars + 1, "99999 1 700", "merges"),
             (len(lines) - 2, "1 0 2 4", "special")]  # fmt: skip
    for index, bad, match in cases:
        broken = lines.copy()
        broken[index] = bad
        (tmp_path / "bad.model").write_text("\n".join(broken))
        with pytest.raises(ValueError, match=match):
            YTTMTokenizer.from_file(tmp_path / "bad.model")
    (tmp_path / "binary.model").write_bytes(b"\x80\x81")
    with pytest.raises(ValueError, match="not ASCII"):
        YTTMTokenizer.from_file(tmp_path / "binary.model")


# ---- the Sber VQGAN ------------------------------------------------------------------------------------------------


def test_the_sber_vqgan_decodes_and_encodes_as_rudalles(tmp_path):
    """ruDALL-E's image tokenizer, a taming GumbelVQ with f = 8, from the YAML that ships in `rudalle` (its widths
    cut down), through pictext's taming import: decoding random codes and encoding random pictures equal
    ruDALL-E's VQGanGumbelVAE."""
    import yaml

    from pictext.vqgan.convert import load_taming

    vae = reference_module("rudalle.vae.model")
    published = yaml.safe_load((Path(vae.__file__).parent / "vqgan.gumbelf8-sber.config.yml").read_text())
    params = published["model"]["params"]
    assert params["n_embed"] == 8192 and params["ddconfig"]["ch_mult"] == [1, 1, 2, 4]  # f = 8
    params.update(n_embed=64, embed_dim=16)
    params["ddconfig"].update(ch=32, z_channels=16, resolution=64)  # attention stays at 32 px: one level down
    (tmp_path / "sber.yaml").write_text(yaml.safe_dump(published))

    torch.manual_seed(0)
    reference = vae.VQGanGumbelVAE(omegaconf_like(published)).eval()
    torch.save({"state_dict": reference.model.state_dict()}, tmp_path / "sber.ckpt")
    ours = load_taming(tmp_path / "sber.ckpt", tmp_path / "sber.yaml")
    assert ours.config.quantizer == "gumbel" and ours.config.factor == 8

    codes = torch.randint(0, 64, (2, 8, 8))
    with torch.no_grad():
        want = reference.decode(codes.flatten(1))  # (B, 3, 64, 64) in [0, 1]
        got = (ours.decode_indices(codes).clamp(-1, 1) + 1) / 2
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert ((want > 0) & (want < 1)).float().mean() > 0.5 and want.std() > 1e-3  # not clamped flat
    pictures = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = reference.get_codebook_indices(pictures, disable_gumbel_softmax=True)
        got = ours.encode(pictures * 2 - 1).indices.flatten(1)
    assert torch.equal(got, want)


def test_the_sber_dwt_vqgan_draws_as_rudalles_at_twice_the_side(tmp_path, tiny_model_path):
    """The DWT variant (`get_vae(dwt=True)`: taming's decoder drawing 12 channels of Haar coefficients, inverted
    to a picture of twice the side), saved whole as ruDALL-E loads it: pictext's VQGAN with `wavelet` decodes
    random codes as ruDALL-E's within 1e-5 and encodes as it does; filters other than Haar's are refused."""
    import yaml

    from pictext.vqgan.convert import load_taming

    vae = reference_module("rudalle.vae.model")
    published = yaml.safe_load((Path(vae.__file__).parent / "vqgan.gumbelf8-sber.config.yml").read_text())
    published["model"]["params"].update(n_embed=64, embed_dim=16)
    published["model"]["params"]["ddconfig"].update(ch=32, z_channels=16, resolution=64)
    (tmp_path / "sber.yaml").write_text(yaml.safe_dump(published))

    torch.manual_seed(0)
    reference = vae.VQGanGumbelVAE(omegaconf_like(published), dwt=True).eval()
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "dwt.ckpt")
    ours = load_taming(tmp_path / "dwt.ckpt", tmp_path / "sber.yaml")
    assert ours.config.wavelet and ours.config.factor == 8

    codes = torch.randint(0, 64, (2, 8, 8))
    with torch.no_grad():
        want = reference.decode(codes.flatten(1))  # (B, 3, 128, 128): twice the 64 px it encodes
        got = (ours.decode_indices(codes).clamp(-1, 1) + 1) / 2
    assert want.shape == (2, 3, 128, 128)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert ((want > 0) & (want < 1)).float().mean() > 0.5 and want.std() > 1e-3
    pictures = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = reference.get_codebook_indices(pictures, disable_gumbel_softmax=True)
        got = ours.encode(pictures * 2 - 1).indices.flatten(1)
    assert torch.equal(got, want)

    state = reference.state_dict()
    state["model.decoder.idwt.g1_row"] = state["model.decoder.idwt.g1_row"].flip(-1)  # another wavelet
    torch.save({"state_dict": state}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="g1_row is not the Haar wavelet's filter"):
        load_taming(tmp_path / "other.ckpt", tmp_path / "sber.yaml")

    from pictext.generate import GenerationError, generate

    with pytest.raises(GenerationError, match="twice the side"):  # VQGAN+CLIP's picture is the size it optimizes
        generate("радуга", "vqgan-clip", vqgan=ours, clip=str(tiny_model_path), steps=1)


# ---- a whole ruDALL-E, from a folder ---------------------------------------------------------------------------------


def test_a_rudalle_folder_draws_through_the_cli(bpe_model, tmp_path, capsys):
    """A folder holding ruDALL-E's three files by their published names (and, for another size than Malevich's,
    its configs in rudalle.json) is a DALL-E model wherever one is taken: here `pictext generate --method dalle
    --dalle FOLDER` with a Russian prompt, on small random configs."""
    import json
    import shutil

    import yaml
    from PIL import Image

    from pictext.cli import main
    from pictext.dalle import convert

    params = SMALL | {"vocab_size": 600 + 10, "cogview_sandwich_layernorm": True}  # the 600-token BPE's ids fit
    folder = tmp_path / "ruDALL-E"
    folder.mkdir()
    torch.save(reference(seed=6, **params).state_dict(), folder / "pytorch_model_v3.bin")
    vae = reference_module("rudalle.vae.model")
    vqgan = yaml.safe_load((Path(vae.__file__).parent / "vqgan.gumbelf8-sber.config.yml").read_text())["model"]
    vqgan["params"].update(n_embed=24, embed_dim=32)  # = z_channels, as in every GumbelVQ (its proj takes z)
    vqgan["params"]["ddconfig"].update(ch=32, z_channels=32, resolution=64)
    torch.manual_seed(0)
    gumbel = vae.GumbelVQ(vqgan["params"]["ddconfig"], 24, 32)
    torch.save({"state_dict": gumbel.state_dict()}, folder / "vqgan.gumbelf8-sber.model.ckpt")
    shutil.copy(bpe_model, folder / "bpe.model")
    assert convert.rudalle_files(folder) == {"transformer": folder / "pytorch_model_v3.bin",
                                             "vqgan": folder / "vqgan.gumbelf8-sber.model.ckpt",
                                             "tokenizer": folder / "bpe.model"}  # fmt: skip
    with pytest.raises(CheckpointError):  # Malevich's configs, the registry's default, do not fit these files
        convert.load_rudalle(folder)
    (folder / "rudalle.json").write_text(json.dumps({"rudalle": params, "vqgan": vqgan}))
    pipeline = convert.load_rudalle(folder)
    assert pipeline.model.config.image_grid == 8 and pipeline.resolution == 64
    assert pipeline.text("Радуга")[0][0, :3].tolist() == [2, *pipeline.text_tokenizer.encode("радуга"), 3][:3]

    out = tmp_path / "out"
    main(["generate", "радуга на фоне ночного города", "--method", "dalle", "--dalle", str(folder), "--samples",
          "2", "--out", str(out), "--seed", "1", "--clip", "default"])  # fmt: skip
    pictures = sorted(out.glob("*.png"))
    assert len(pictures) == 2, capsys.readouterr()
    record = json.loads(pictures[0].with_suffix(".json").read_text(encoding="utf-8"))
    assert (record["top_k"], record["top_p"], record["guidance_scale"]) == (2048, 0.995, 1.0)  # ruDALL-E's own
    (drawn,) = [p for p in pictures if not p.stem.endswith("-sheet")]  # the kept one, beside the contact sheet
    with Image.open(drawn) as picture:
        assert picture.size == (64, 64)

    (folder / "vqgan.gumbelf8-sber.model.ckpt").unlink()  # the DWT variant alone, as rudalle/malevich-dwt has it
    torch.manual_seed(0)
    dwt = vae.VQGanGumbelVAE(omegaconf_like({"model": vqgan}), dwt=True)
    torch.save({"state_dict": dwt.state_dict()}, folder / "vqgan.gumbelf8-sber-dwt.model.ckpt")
    main(["generate", "радуга", "--method", "dalle", "--dalle", str(folder), "--samples", "1", "--out",
          str(tmp_path / "dwt"), "--seed", "1", "--clip", "default"])  # fmt: skip
    (drawn,) = [p for p in (tmp_path / "dwt").glob("*.png") if not p.stem.endswith("-sheet")]
    with Image.open(drawn) as picture:
        assert picture.size == (128, 128)  # its codes drawn at twice the side they encode

    assert convert.rudalle_files(tmp_path) is None
    with pytest.raises(CheckpointError, match="not a ruDALL-E folder.*bpe.model"):
        convert.load_rudalle(tmp_path)


# ---- ruCLIP --------------------------------------------------------------------------------------------------------


def ruclip_folder(folder: Path, bpe_model: Path) -> torch.nn.Module:
    """A ruCLIP folder as the Hub's repos hold one (config.json, pytorch_model.bin, bpe.model) at a small random
    config, written from the ruclip package's own CLIP; returns that model."""
    import json

    ruclip_model = reference_module("ruclip.model")
    config = {
        "embed_dim": 32,
        "image_resolution": 64,
        "vision_layers": 2,
        "vision_width": 64,
        "vision_patch_size": 16,
        "context_length": 20,
        "vocab_size": 600,
        "transformer_width": 48,
        "transformer_heads": 3,
        "transformer_layers": 2,
    }  # fmt: skip; 3 heads of 16: not width // 64, so the config's heads matter
    torch.manual_seed(0)
    reference = ruclip_model.CLIP(**config).eval()
    with torch.no_grad():
        for name, p in reference.named_parameters():  # layer norms off their initial 1 and 0
            if "ln" in name:
                p.add_(torch.randn_like(p) * 0.3)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(reference.state_dict(), folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(config | {"mean": None, "std": None}))
    (folder / "bpe.model").write_bytes(bpe_model.read_bytes())
    return reference


def test_ruclip_equals_the_ruclip_package_and_classifies_in_russian(bpe_model, tmp_path):
    """A ruCLIP folder (config.json, pytorch_model.bin, bpe.model) at a small random config: pictext's CLIP gives
    the ruclip package's text and image embeddings (its processor's tokens and pictures) within 1e-5, and
    zero-shot classification with Russian labels runs on it."""
    import numpy as np
    from PIL import Image

    from pictext.clip.io import load_clip

    processor = reference_module("ruclip.processor").RuCLIPProcessor(str(bpe_model), image_size=64, text_seq_length=20)
    reference = ruclip_folder(tmp_path, bpe_model)
    ours = load_clip(tmp_path)

    texts = ["Фото, на котором изображено кот", "собака на фоне моря", "a photo of a dog", "радуга"]
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(64, 64), (90, 70),
                                                                                               (50, 120)]]  # fmt: skip
    inputs = processor(text=texts, images=pictures)
    assert torch.equal(ours.tokenizer(texts), inputs["input_ids"])
    assert torch.equal(ours.preprocess.batch(pictures), inputs["pixel_values"])
    with torch.no_grad():
        torch.testing.assert_close(ours.encode_text(inputs["input_ids"]), reference.encode_text(inputs["input_ids"]),
                                   rtol=0, atol=1e-5)  # fmt: skip
        torch.testing.assert_close(ours.encode_image(inputs["pixel_values"]),
                                   reference.encode_image(inputs["pixel_values"]), rtol=0, atol=1e-5)  # fmt: skip

    from pictext.api import classify
    from pictext.clip.zero_shot import RUSSIAN_TEMPLATES as templates  # ruCLIP's own

    labels = ["кот", "собака", "человек"]
    probs = classify(pictures, labels, model=ours, templates=templates)
    with torch.no_grad():  # the same zero-shot recipe on the reference's embeddings
        unit = torch.nn.functional.normalize
        ids = processor(text=[t.format(label) for label in labels for t in templates])["input_ids"]
        classes = unit(unit(reference.encode_text(ids), dim=-1).view(3, len(templates), -1).mean(1), dim=-1)
        images = unit(reference.encode_image(inputs["pixel_values"]), dim=-1)
        want = (reference.logit_scale.exp() * images @ classes.T).softmax(-1)
    np.testing.assert_allclose(probs, want.numpy(), atol=1e-5)


def ruclip_package_models() -> dict[str, dict]:
    """ruclip.MODELS (name -> repo_id, filenames), read from the package's source: importing its __init__ needs
    huggingface_hub's `cached_download`, gone since 0.26."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec("ruclip")
    assert spec is not None and spec.origin, "ruclip is not installed"
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    table = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                 and any(getattr(t, "id", None) == "MODELS" for t in node.targets))  # fmt: skip
    assert isinstance(table, ast.Dict)
    return {ast.literal_eval(k): {kw.arg: ast.literal_eval(kw.value) for kw in v.keywords}
            for k, v in zip(table.keys, table.values)}  # fmt: skip


def test_the_registrys_ruclips_are_the_ruclip_packages_models():
    from pictext import published

    entries = {name: e for name, e in published.registry().items() if e.format == "ruclip"}
    models = ruclip_package_models()
    assert len(models) == 6 and sorted(e.reference["ruclip"] for e in entries.values()) == sorted(models)
    for name, item in entries.items():
        want = models[item.reference["ruclip"]]
        assert name == "ruclip/" + item.reference["ruclip"].removeprefix("ruclip-")
        assert {f.name for f in item.files} == set(want["filenames"])
        assert {f.hub for f in item.files} == {want["repo_id"]} and item.family == "clip"


RUCLIP_CHILD = """
import json, sys
import pictext
from pictext import published
path = published.fetch(sys.argv[1], progress=False)
model = pictext.load(sys.argv[1], precision="fp32")
print(json.dumps({"path": str(path), "row": pictext.encode_texts(["красный круг"], model=model)[0].tolist()}))
"""


def test_a_fetched_ruclip_loads_by_its_name_and_reranks_rudalle_by_default(bpe_model, tmp_path):
    """ruDALL-E's reranker, `ruclip/vit-base-patch32-384`, as `pictext models fetch` gets it: a stand-in ruCLIP
    folder in huggingface_hub's cache layout under that repo's name, fetched with HF_HUB_OFFLINE=1 (a child
    process: huggingface_hub reads its settings at import), loads by the registry name as the folder itself; a
    ruDALL-E model given no --clip is reranked by it, and where it is not fetched the error says how to fetch it."""
    import json
    import os
    import subprocess
    import sys

    import pictext
    from pictext.generate import prepare
    from pictext.generate.dalle import RUDALLE_RERANKER, DALLEGenerator
    from pictext.hub import ModelNotFoundError

    item = pictext.published.entry(RUDALLE_RERANKER)
    assert item is not None and item.format == "ruclip"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / f"models--{item.files[0].hub.replace('/', '--')}"
    ruclip_folder(repo / "snapshots" / commit, bpe_model)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PICTEXT_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-c", RUCLIP_CHILD, RUDALLE_RERANKER], env=env, capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.splitlines()[-1])
    assert out["path"] == str(repo / "snapshots" / commit)  # read where huggingface_hub keeps it
    expected = pictext.encode_texts(["красный круг"], model=pictext.load(out["path"], precision="fp32"))[0]
    assert out["row"] == pytest.approx(expected.tolist(), abs=1e-6)

    assert DALLEGenerator.models_for("радуга", {"dalle": "rudalle/malevich"})["clip"] == [RUDALLE_RERANKER]
    assert DALLEGenerator.models_for("радуга", {"dalle": "rudalle/malevich", "clip": "default"})["clip"] == "default"
    assert DALLEGenerator.models_for("радуга", {})["clip"] == ["shapes"]  # pictext's own DALL-E: as before
    with pytest.raises(ModelNotFoundError, match=f"pictext models fetch {RUDALLE_RERANKER}"):
        prepare("dalle", "радуга", dalle="rudalle/malevich")  # this test's PICTEXT_HOME has fetched nothing
