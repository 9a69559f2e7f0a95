"""Karlo through diffusers' unCLIP layout: pictext's load of a folder diffusers wrote draws what diffusers draws.

The folders are tiny random pipelines built here from small configs (as diffusers' own tests of these pipelines
do) and saved with `save_pretrained`; their tokenizer is a small byte-level BPE vocabulary the test writes.
pictext runs them with its own loop and its own CLIP; diffusers with `UnCLIPPipeline` and
`UnCLIPImageVariationPipeline`. Same prompt, steps, guidance and seed: the same pixels within 1e-4.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from pictext.errors import UsageError
from pictext.generate import GenerationError
from pictext.text.tokenizer import ClipBPETokenizer, _bytes_to_unicode
from pictext.unclip.karlo import KarloPipeline, is_karlo_folder, load_karlo

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

PROMPT = "a red circle"
STEPS = {"prior_num_inference_steps": 3, "decoder_num_inference_steps": 3, "super_res_num_inference_steps": 2}


def write_tokenizer(folder: Path) -> int:
    """A CLIP tokenizer folder: every byte symbol (alone and word-final), a few merges, SOT and EOT last (the
    highest ids, as in OpenAI's vocabulary, where the text encoder pools at the argmax). Returns its size."""
    chars = list(_bytes_to_unicode().values())
    merges = [("r", "e"), ("re", "d</w>"), ("c", "i"), ("ci", "r"), ("cir", "c"), ("l", "e</w>"), ("circ", "le</w>")]
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return len(vocab)


def text_encoder(vocab: int):
    config = transformers.CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=24,
        projection_dim=24,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=3,
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        pad_token_id=0,
    )
    return transformers.CLIPTextModelWithProjection(config).eval()


def parts(tmp: Path, vocab_folder: Path) -> dict:
    """Tiny random parts of both pipelines, one seed each (what matters is only that both sides read them)."""
    from diffusers import PriorTransformer, UnCLIPScheduler, UNet2DConditionModel, UNet2DModel
    from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel

    torch.manual_seed(0)
    vocab = write_tokenizer(vocab_folder)
    tokenizer = transformers.CLIPTokenizer(
        str(vocab_folder / "vocab.json"), str(vocab_folder / "merges.txt"), model_max_length=77
    )
    decoder = UNet2DConditionModel(
        sample_size=16,
        in_channels=3,
        out_channels=6,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        cross_attention_dim=32,
        attention_head_dim=16,
        resnet_time_scale_shift="scale_shift",
        class_embed_type="identity",
    )

    def super_res() -> UNet2DModel:
        return UNet2DModel(
            sample_size=32,
            layers_per_block=1,
            block_out_channels=(32, 64),
            in_channels=6,
            out_channels=3,
            add_attention=False,
            down_block_types=("ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D"),
            up_block_types=("ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D"),
        )

    out = {
        "text_encoder": text_encoder(vocab),
        "tokenizer": tokenizer,
        "text_proj": UnCLIPTextProjModel(clip_embeddings_dim=24, time_embed_dim=128, cross_attention_dim=32),
        "decoder": decoder,
        "super_res_first": super_res(),
        "super_res_last": super_res(),
        "decoder_scheduler": UnCLIPScheduler(variance_type="learned_range", prediction_type="epsilon"),
        "super_res_scheduler": UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="epsilon"),
    }
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=12, embedding_dim=24, num_layers=2)
    with torch.no_grad():  # random statistics, learned null and prd tokens: zeros would hide a part left out
        for p in (
            prior.clip_mean,
            prior.clip_std,
            prior.prd_embedding,
            prior.positional_embedding,
            out["text_proj"].learned_classifier_free_guidance_embeddings,
        ):
            p.normal_()
    out |= {
        "prior": prior,
        "prior_scheduler": UnCLIPScheduler(
            variance_type="fixed_small_log", prediction_type="sample", clip_sample_range=5.0
        ),
    }
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("karlo")
    p = parts(tmp, tmp / "vocab")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from diffusers import UnCLIPImageVariationPipeline, UnCLIPPipeline

        text = UnCLIPPipeline(**{k: v for k, v in p.items()})
        vision = transformers.CLIPVisionConfig(
            hidden_size=32,
            projection_dim=24,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            image_size=32,
            patch_size=8,
        )
        image_encoder = transformers.CLIPVisionModelWithProjection(vision).eval()
        extractor = transformers.CLIPImageProcessor(crop_size=32, size=32)
        keep = {k: v for k, v in p.items() if k not in ("prior", "prior_scheduler")}
        variation = UnCLIPImageVariationPipeline(**keep, image_encoder=image_encoder, feature_extractor=extractor)
    text.save_pretrained(tmp / "text")
    variation.save_pretrained(tmp / "variation")
    return {"text": (tmp / "text", text), "variation": (tmp / "variation", variation)}


def diffusers_pixels(pipeline, seed: int, **kwargs) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = pipeline(generator=torch.Generator().manual_seed(seed), output_type="np", **kwargs).images
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def stage_differences(ours: KarloPipeline, reference, seed: int = 7, n: int = 2) -> dict[str, float]:
    """Each stage of pictext's run against diffusers' at the default guidance (4 for the prior, 8 for the
    decoder), given diffusers' inputs to it: its image embeddings to pictext's decoder, its 64 px pictures to
    pictext's super-resolution. The random draws are the same (pictext's earlier stages draw as many)."""
    seen = {}
    text_proj, decoder_step = reference.text_proj.forward, reference.decoder_scheduler.step

    def embeddings(**kwargs):
        seen["embeddings"] = kwargs["image_embeddings"].clone()
        return text_proj(**kwargs)

    def small(*args, **kwargs):
        out = decoder_step(*args, **kwargs)
        seen["small"] = out.prev_sample.clamp(-1, 1)
        return out

    reference.text_proj.forward, reference.decoder_scheduler.step = embeddings, small
    try:
        want = diffusers_pixels(reference, seed, prompt=PROMPT, num_images_per_prompt=n, **STEPS)
    finally:
        reference.text_proj.forward, reference.decoder_scheduler.step = text_proj, decoder_step
    condition = ours._condition([PROMPT] * n, guided=True)
    g = torch.Generator().manual_seed(seed)
    prior = ours.image_embeddings_for(condition, 4.0, 3, g)
    decoded = ours.decode(seen["embeddings"], condition, 8.0, 3, g)
    final = ours.super_resolve(seen["small"], 2, g)
    assert want.std() > 0.05  # pictures, not a constant the comparison would pass on
    return {
        "prior": (prior - seen["embeddings"]).abs().max().item(),
        "decoder": (decoded - seen["small"]).abs().max().item(),
        "super_res": (final - want).abs().max().item(),
    }


def test_a_karlo_folder_draws_what_diffusers_draws_from_the_same_seed(folders):
    """Without guidance, the whole picture within 1e-4. With the default guidance, each stage within 1e-4 given
    diffusers' input to it. The whole guided picture differs more (about 1e-2 here) and must: a rounding
    difference of 1e-7 (pictext's CLIP against transformers') grows 15-fold through each guided decoder step
    and some hundredfold through the first super-resolution step, which divides by sqrt(alpha_bar) at t=999;
    diffusers against itself on 1 thread and on 2 differs by 5e-3 at these settings."""
    folder, reference = folders["text"]
    assert is_karlo_folder(folder)
    ours = load_karlo(folder)
    want = diffusers_pixels(
        reference,
        7,
        prompt=PROMPT,
        num_images_per_prompt=2,
        prior_guidance_scale=1.0,
        decoder_guidance_scale=1.0,
        **STEPS,
    )
    got = ours.text_to_pixels([PROMPT] * 2, 1.0, 1.0, 3, 3, 2, torch.Generator().manual_seed(7))
    assert got.shape == want.shape == (2, 3, 32, 32)
    assert (got - want).abs().max() < 1e-4
    differences = stage_differences(ours, reference)
    assert max(differences.values()) < 1e-4, differences


def test_given_latents_give_the_same_pictures_as_diffusers(folders):
    folder, reference = folders["text"]
    ours = load_karlo(folder)
    g = torch.Generator().manual_seed(3)
    latents = {
        "prior_latents": torch.randn(1, 24, generator=g),
        "decoder_latents": torch.randn(1, 3, 16, 16, generator=g),
        "super_res_latents": torch.randn(1, 3, 32, 32, generator=g),
    }
    want = diffusers_pixels(
        reference, 0, prompt=PROMPT, prior_guidance_scale=1.0, decoder_guidance_scale=1.0, **STEPS, **latents
    )
    got = ours.text_to_pixels([PROMPT], 1.0, 1.0, 3, 3, 2, torch.Generator().manual_seed(0), **latents)
    assert (got - want).abs().max() < 1e-4


def test_each_part_matters(folders):
    """The comparison can fail: without the prior's CLIP statistics the prior's stage is off, without the text
    projection's extra tokens the decoder's, far beyond the tolerance."""
    folder, reference = folders["text"]
    for spoil, stage in (("clip_std", "prior"), ("extra_tokens", "decoder")):
        ours = load_karlo(folder)
        with torch.no_grad():
            if spoil == "clip_std":
                ours.prior.clip_std.fill_(1.0)
            else:
                ours.text_proj.clip_extra_context_tokens_proj.weight.zero_()
        assert stage_differences(ours, reference)[stage] > 1e-2, spoil


def test_an_image_variation_folder_draws_what_diffusers_draws(folders):
    folder, reference = folders["variation"]
    ours = load_karlo(folder)
    assert ours.prior is None and ours.clip.has_image_tower
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    want = diffusers_pixels(
        reference,
        5,
        image=pixels,
        decoder_guidance_scale=8.0,
        decoder_num_inference_steps=3,
        super_res_num_inference_steps=2,
    )
    embeddings = ours.clip.encode_image(pixels)
    got = ours.embeddings_to_pixels(embeddings, 8.0, 3, 2, torch.Generator().manual_seed(5))
    assert (got - want).abs().max() < 1e-4
    with pytest.raises(UsageError, match="no prior"):
        ours.generate(PROMPT)


def test_the_text_only_clip_refuses_pictures_and_the_tokenizer_matches_hugging_face(folders):
    folder, reference = folders["text"]
    ours = load_karlo(folder)
    assert not ours.clip.has_image_tower
    with pytest.raises(UsageError, match="image encoder"):
        ours.clip.encode_image(torch.zeros(1, 3, 32, 32))
    tokenizer = ClipBPETokenizer.from_hf_folder(folder / "tokenizer")
    for text in ("a red circle", "Red, circles!", ""):
        want = reference.tokenizer(text, padding="max_length", max_length=77, return_tensors="pt")
        got = tokenizer(text)
        real = want.attention_mask.bool()
        assert torch.equal(got[real], want.input_ids[real]), text


def test_the_public_interface_draws_256_px_style_pictures(folders):
    folder, _ = folders["text"]
    ours: KarloPipeline = load_karlo(folder)
    ours.prior_steps, ours.super_res_steps = 2, 2
    pictures = ours.generate(PROMPT, n=2, steps=2, seed=1)
    again = ours.generate(PROMPT, n=2, steps=2, seed=1)
    assert [p.size for p in pictures] == [(32, 32)] * 2
    assert [p.tobytes() for p in pictures] == [p.tobytes() for p in again]


def test_karlo_is_drawn_from_the_api_with_its_own_defaults(folders):
    """`pictext.generate(..., method="unclip", unclip=FOLDER)` picks Karlo's preset (guidance 4 and 8, 25 decoder
    steps, one picture) and records it; the settings given override it."""
    import pictext

    folder, _ = folders["text"]
    result = pictext.generate(PROMPT, method="unclip", unclip=str(folder), steps=2, seed=3)
    assert len(result.samples) == 1 and result.samples[0].size == (32, 32)
    record = result.records[0]
    assert (record["prior_guidance"], record["guidance_scale"], record["steps"]) == (4.0, 8.0, 2)
    with pytest.raises(GenerationError, match="brings its own CLIP"):
        pictext.generate(PROMPT, method="unclip", unclip=str(folder), clip="default", steps=2)


def test_the_cli_draws_with_karlo_and_varies_with_its_image_variation_folder(folders, tmp_path, capsys):
    from PIL import Image

    from pictext.cli import main

    text, _ = folders["text"]
    variation, _ = folders["variation"]
    drawn = tmp_path / "drawn"
    assert (
        main(["generate", PROMPT, "--method", "unclip", "--unclip", str(text), "--steps", "2", "--out", str(drawn)])
        == 0
    )
    assert Image.open(drawn / "a-red-circle-0.png").size == (32, 32)
    assert json.loads((drawn / "a-red-circle-0.json").read_text())["guidance_scale"] == 8.0  # Karlo's preset
    Image.new("RGB", (40, 40), (200, 30, 30)).save(tmp_path / "red.png")
    varied = ["vary", str(tmp_path / "red.png"), "--steps", "2", "-n", "2", "--out", str(tmp_path / "varied")]
    assert main([*varied, "--unclip", str(variation)]) == 0
    assert len(list((tmp_path / "varied").glob("*-frames/*.png"))) == 2
    assert main([*varied, "--unclip", str(text)]) == 2
    assert "without an image encoder" in capsys.readouterr().err


def test_the_page_offers_karlos_defaults_and_varies_with_its_variation_folder(folders, tmp_path, tiny_model_path):
    """`pictext serve` with a Karlo folder: the Generate tab's unclip settings default to Karlo's preset, and the
    variations route draws with it (no CLIP score needed)."""
    from fastapi.testclient import TestClient
    from PIL import Image

    from pictext.search import Index
    from pictext.server.app import Generation, create_app

    from helpers import png_bytes, write_gallery

    write_gallery(tmp_path / "photos")
    index = Index(tmp_path / "index", model=tiny_model_path)
    index.add([tmp_path / "photos"])
    variation, _ = folders["variation"]
    client = TestClient(create_app(index, generation=Generation({"unclip": {"unclip": str(variation)}})),
                        base_url="http://127.0.0.1")  # fmt: skip
    settings = client.get("/api/generate/status").json()["settings"]["unclip"]
    assert (settings["guidance"]["default"], settings["steps"]["default"], settings["samples"]["default"]) == (
        8.0,
        25,
        1,
    )
    red = ("red.png", png_bytes(Image.new("RGB", (40, 40), (200, 30, 30))), "image/png")
    response = client.post("/api/unclip/vary", files={"file": red}, data={"n": 2, "steps": 2, "seed": 1})
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 2
