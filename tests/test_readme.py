"""Every example in README.md runs: each `sh` and `python` block, in order, in a folder holding what they name.

Blocks without a language are synopses (`pictext generate PROMPT [--steps N]`) and are not run. The folder the
examples run in has `photos/` (shapes-world pictures), `a.png` (a red circle), `b.jpg` (a blue square) and
small stand-ins, with random weights, for the published checkpoints the Python section loads by file name.
Where an example would take minutes, the test shortens it (`SHORTER`, below); README shows what a user types.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from helpers import free_port, shape_image

pytestmark = pytest.mark.slow  # every example of the README: a few minutes

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Shorter settings for examples that train or draw for minutes: (the text in README, what the test runs instead)
SHORTER = [
    ("--steps 900", "--steps 2 --batch-size 8"),
    # DALL-E's and unCLIP's recipes first turn the whole shapes world into tokens or CLIP embeddings (minutes):
    # the test trains on a folder of 8 captioned pictures, DALL-E on the shipped DALL-E's image tokenizer
    ("--data shapes --steps 9600", "--data pairs/ --image-tokenizer vqgan:dalle --steps 2 --batch-size 8"),
    ("--data shapes --steps 1500", "--data pairs/ --steps 2 --batch-size 8"),
    ("--data shapes --steps 8000", "--data pairs/ --steps 2 --batch-size 8"),
    ("--steps 200", "--steps 3 --cutouts 4"),
    ("--samples 64 --keep 8", "--samples 8 --keep 2"),
    ("steps=200, callback=lambda step, frame: step.step < 150", "steps=3, callback=lambda step, frame: step.step < 1"),
    ("--nproc_per_node 2 -m pictext", "--standalone --nproc_per_node 2 -m pictext"),  # one machine, any free port
]
# Blocks the test does not run, and why
NOT_RUN = {
    "make demo": "the README's opening commands: `make test` is what runs this file, and the demo's parts run in "
    "tests/test_shipped.py",
    "pictext models fetch": "downloads published weights from the internet, which tests cannot reach; "
    "tests/test_published.py fetches through the same code from a server on 127.0.0.1",
}


def blocks() -> list[tuple[int, str, str]]:
    """(line, language, code) of every fenced block in README.md."""
    text = (ROOT / "README.md").read_text()
    found = []
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        found.append((text[: m.start()].count("\n") + 1, m.group(1), m.group(2)))
    return found


def shorter(code: str) -> str:
    for long, short in SHORTER:
        code = code.replace(long, short)
    return code


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readme")
    photos = folder / "photos"
    photos.mkdir()
    for color, shape in (("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "cross")):
        for size in ("small", "large"):
            shape_image(color, shape, size).save(photos / f"{size}-{color}-{shape}.png")
    pairs = folder / "pairs"
    pairs.mkdir()
    for picture in sorted(photos.iterdir()):
        shutil.copy(picture, pairs / picture.name)
        (pairs / picture.name).with_suffix(".txt").write_text("a " + picture.stem.replace("-", " ") + "\n")
    shape_image("red", "circle").save(photos / "red-circle.png")
    shape_image("red", "circle").save(folder / "a.png")
    shape_image("blue", "square").save(folder / "b.jpg", quality=95)
    _published_stand_ins(folder)
    home = folder / "home"
    (home / "downloads").mkdir(parents=True)
    for tarball in (ROOT / ".cache" / "pictext" / "downloads").glob("*.tgz"):  # what `make test` fetched with npm
        shutil.copy(tarball, home / "downloads")
    return folder, home


def _published_stand_ins(folder: Path) -> None:
    """Random-weight files in the published formats, named as README names them (tests/test_parity.py proves
    these formats exact against their reference code)."""
    import open_clip
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    small = {"vision_cfg": {"layers": 1, "width": 64, "patch_size": 32}, "text_cfg": {"layers": 1, "width": 64},
             "embed_dim": 64}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        openai = open_clip.create_model("ViT-B-32-quickgelu", **small).eval()
        pixels, tokens = torch.randn(1, 3, 224, 224), open_clip.tokenize(["a diagram"])
        torch.jit.trace(openai, (pixels, tokens), check_trace=False).save(str(folder / "ViT-B-32.pt"))
        torch.save(open_clip.create_model("ViT-B-32", **small).state_dict(), folder / "epoch_32.pt")
        vision = {"image_size": 32, "layers": 2, "width": 128, "patch_size": 8, "head_width": 32}
        text = {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 1}
        custom = open_clip.create_model("ViT-B-32", embed_dim=64, vision_cfg=vision, text_cfg=text)
        torch.save(custom.state_dict(), folder / "custom.pt")
    hf = CLIPConfig(text_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
                                 "num_attention_heads": 1},
                    vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
                                   "num_attention_heads": 1, "patch_size": 32},
                    projection_dim=64)  # fmt: skip
    CLIPModel(hf).eval().save_pretrained(folder / "clip-vit-base-patch32")


def test_every_example_in_the_readme_runs(workspace):
    folder, home = workspace
    env = {**os.environ, "PICTEXT_HOME": str(home), "PICTEXT_QUIET": "1", "OMP_NUM_THREADS": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    ran = {"sh": 0, "python": 0}
    for line, language, code in blocks():
        if language not in ran:
            continue
        if any(code.lstrip().startswith(start) for start in NOT_RUN):
            continue
        if language == "python":
            command = [sys.executable, "-c", shorter(code)]
        else:
            command = ["bash", "-euo", "pipefail", "-c", _servers_probed(shorter(code))]
        result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"README.md line {line} ({language}) failed:\n{code}\n{result.stderr[-3000:]}"
        ran[language] += 1
    assert ran["sh"] >= 5 and ran["python"] >= 5, ran  # the fence pattern found the examples, none silently skipped


PROBE = """
import sys, time, urllib.request
for _ in range(300):  # the server loads its model first
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/status", timeout=5)
        break
    except OSError:
        time.sleep(0.2)
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/generate/status", timeout=5)
"""


def _servers_probed(code: str) -> str:
    """A `pictext serve ... &` line runs in the background; the block then waits for the server to answer, asks
    it for its status, and stops it (README shows the line a user runs and leaves running)."""
    lines = []
    for line in code.splitlines():
        match = re.match(r"\s*(pictext serve .*--port (\d+).*)&", line)
        if match:
            port = str(free_port())
            lines.append(match.group(1).replace(f"--port {match.group(2)}", f"--port {port}") + " & server=$!")
            lines.append(
                f"for i in $(seq 200); do curl -sf http://127.0.0.1:{port}/api/status && break; sleep 0.3; done"
            )
            lines.append(f"curl -sf http://127.0.0.1:{port}/api/generate/status > /dev/null")
            lines.append("kill $server; wait $server || true")
        else:
            lines.append(line)
    return "\n".join(lines)


def test_the_readme_has_no_block_of_an_unknown_language():
    """A block is run (sh, python) or a synopsis (no language); anything else would be neither, unnoticed."""
    assert {language for _, language, _ in blocks()} <= {"", "sh", "python"}


def test_the_shortened_examples_exist():
    """Each shortening still matches README's text (an example edited away would leave a dead entry here)."""
    text = (ROOT / "README.md").read_text()
    assert [long for long, _ in SHORTER if long not in text] == []
