"""Parity with the reference implementations: their random weights, written in their own formats, load here
and give the same embeddings (max abs difference <= 1e-5 in float32)."""

from __future__ import annotations

import warnings

import open_clip
import pytest
import torch

from pictext.checkpoint import CheckpointError
from pictext.clip.convert import export_hf, export_open_clip
from pictext.clip.io import load_clip

TOL = 1e-5


def _inputs(size: int, n: int = 2):
    torch.manual_seed(1)
    return torch.randn(n, 3, size, size), open_clip.tokenize(["a diagram", "a dog playing in the snow, at night"][:n])


def _assert_same(ours, ref, size):
    pixels, tokens = _inputs(size)
    with torch.no_grad():
        assert (ours.encode_image(pixels) - ref.encode_image(pixels)).abs().max() <= TOL
        assert (ours.encode_text(tokens) - ref.encode_text(tokens)).abs().max() <= TOL


def _hf(out):
    """Projected features: transformers 4 returns the tensor, 5 an output whose pooler_output holds it."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _open_clip(name: str, **kw):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_clip.create_model(name, **kw).eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ViT-B-32-quickgelu", "RN50-quickgelu"])
def test_open_clip_training_checkpoint_full_size(tmp_path, name):
    ref = _open_clip(name)
    path = tmp_path / "epoch_1.pt"
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, path)
    _assert_same(load_clip(path, activation="quick_gelu"), ref, 224)


def test_open_clip_gelu_model_and_activation_is_never_guessed(tmp_path):
    ref = _open_clip(
        "ViT-B-32", vision_cfg={"layers": 2, "width": 128}, text_cfg={"layers": 2, "width": 128, "heads": 2}
    )
    path = tmp_path / "open_clip_model.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    with pytest.raises(CheckpointError, match="does not record its activation"):
        load_clip(path)
    _assert_same(load_clip(path, activation="gelu"), ref, 224)
    wrong = load_clip(path, activation="quick_gelu")
    pixels, _ = _inputs(224)
    with torch.no_grad():
        assert (wrong.encode_image(pixels) - ref.encode_image(pixels)).abs().max() > 1e-3  # the mismatch matters


def test_hugging_face_folder_vit_b_32(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    ref = CLIPModel(CLIPConfig()).eval()  # the default config is ViT-B/32
    ref.save_pretrained(tmp_path / "hf")
    ours = load_clip(tmp_path / "hf")
    pixels, tokens = _inputs(224)
    with torch.no_grad():
        assert (ours.encode_image(pixels) - _hf(ref.get_image_features(pixel_values=pixels))).abs().max() <= TOL
        ref_text = _hf(ref.get_text_features(input_ids=tokens))
        assert (ours.encode_text(tokens) - ref_text).abs().max() <= TOL


def test_torchscript_archive_is_read_as_data(tmp_path):
    ref = _open_clip("ViT-B-32-quickgelu", vision_cfg={"layers": 2}, text_cfg={"layers": 2})
    pixels, tokens = _inputs(224, n=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(ref, (pixels, tokens), check_trace=False)
    traced.save(str(tmp_path / "ViT-B-32.pt"))
    _assert_same(load_clip(tmp_path / "ViT-B-32.pt"), ref, 224)


def test_torchscript_reader_refuses_foreign_globals(tmp_path):
    import pickle
    import zipfile

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(Evil()))
        z.writestr("archive/code/__torch__/x.py", "")
    with pytest.raises(CheckpointError, match="refusing to load builtins.print"):
        load_clip(path)


def test_export_to_hugging_face_and_open_clip(tmp_path):
    from transformers import CLIPModel

    ref = _open_clip("ViT-B-32-quickgelu", vision_cfg={"layers": 2}, text_cfg={"layers": 2})
    path = tmp_path / "x.pt"
    torch.save(ref.state_dict(), path)
    ours = load_clip(path, activation="quick_gelu")
    pixels, tokens = _inputs(224)
    export_hf(ours, tmp_path / "hf")
    hf = CLIPModel.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        assert (_hf(hf.get_image_features(pixel_values=pixels)) - ours.encode_image(pixels)).abs().max() <= TOL
        assert (_hf(hf.get_text_features(input_ids=tokens)) - ours.encode_text(tokens)).abs().max() <= TOL
    export_open_clip(ours, tmp_path / "oc.safetensors")
    back = _open_clip(
        "ViT-B-32-quickgelu",
        vision_cfg={"layers": 2},
        text_cfg={"layers": 2},
        pretrained=str(tmp_path / "oc.safetensors"),
    )
    _assert_same(ours, back, 224)


def test_heads_other_than_width_over_64_need_the_config(tmp_path):
    from pictext.clip.model import CLIPConfig, TextConfig, VisionConfig

    vision = {"image_size": 32, "layers": 2, "width": 128, "patch_size": 8, "head_width": 32}
    text = {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 1}
    ref = _open_clip("ViT-B-32", embed_dim=64, vision_cfg=vision, text_cfg=text)
    path = tmp_path / "four_heads.pt"
    torch.save(ref.state_dict(), path)
    config = CLIPConfig(
        embed_dim=64,
        vision=VisionConfig(image_size=32, layers=2, width=128, patch_size=8, head_width=32),
        text=TextConfig(context_length=77, vocab_size=49408, width=128, heads=4, layers=1, eot_token_id=49407),
        activation="gelu",
    )
    _assert_same(load_clip(path, activation="gelu", config=config), ref, 32)
    guessed = load_clip(path, activation="gelu")  # width // 64 = 2 heads: loads, and is a different function
    with torch.no_grad():
        pixels = torch.randn(2, 3, 32, 32)
        assert (guessed.encode_image(pixels) - ref.encode_image(pixels)).abs().max() > 1e-3
    with pytest.raises(CheckpointError, match="contradicts"):
        load_clip(path, activation="quick_gelu", config=config)
