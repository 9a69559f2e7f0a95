"""The trainer learns (loss falls on a tiny batch) and resumes exactly."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from pictext.clip.recipe import CLIPRecipe, build_model
from pictext.clip.train import CLIPTrainConfig, train_clip
from pictext.data.shapes import ShapesWorld, find_shapes
from pictext.training import load_state, train_precision

from helpers import wait_for_hang

TINY = CLIPRecipe(
    image_size=32,
    vision_width=32,
    vision_layers=1,
    text_width=32,
    text_layers=1,
    embed_dim=32,
    train=CLIPTrainConfig(steps=6, batch_size=16, lr=2e-3, warmup=2, precision="fp32", checkpoint_every=3),
)


def _model_and_data(length: int):
    world = ShapesWorld(size=64, length=length, max_shapes=2, grey_fraction=0.25)
    return build_model(TINY, world), world


def test_loss_falls_on_a_fixed_batch():
    model, world = _model_and_data(16)  # 16 pairs, so every step sees (nearly) the same batch
    losses = train_clip(model, world, dataclasses.replace(TINY.train, steps=60, lr=5e-3, warmup=5))
    start, end = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert end < 0.75 * start and end < math.log(16)  # below chance; repeated captions keep it above zero


class _Stop(Exception):
    pass


def _stop_after(n: int):
    def hook(step: int, loss: float) -> None:
        if step + 1 == n:
            raise _Stop

    return hook


def test_shapes_world_is_deterministic_and_holds_out():
    a, b = ShapesWorld(length=50, seed=3), ShapesWorld(length=50, seed=3)
    assert all(a[i][1] == b[i][1] and a[i][0].tobytes() == b[i][0].tobytes() for i in range(50))
    train = ShapesWorld(length=300, max_shapes=2)
    seen = {(s.color, s.shape) for i in range(300) for s in train.scene(i).shapes}
    assert not seen & set(train.held_out)
    held = ShapesWorld(split="held_out", length=100)
    assert all(find_shapes(held[i][0]) == [tuple(held.label(i).split())] for i in range(100))  # the oracle agrees


def test_siglip_trains_and_gradcache_follows_the_full_batch_path(tmp_path):
    import dataclasses

    cfg = dataclasses.replace(TINY.train, steps=30, lr=5e-3, warmup=3, loss="siglip")
    model, world = _model_and_data(16)
    losses = train_clip(model, world, cfg)
    assert losses[-1] < 0.5 * losses[0]
    full = train_clip(_model_and_data(1000)[0], world, dataclasses.replace(cfg, steps=4))
    cached = train_clip(_model_and_data(1000)[0], world, dataclasses.replace(cfg, steps=4, micro_batch=5))
    # Same trajectory: exact gradients from micro-batches. Under bf16 (PICTEXT_TRAIN_PRECISION) the forward keeps
    # 8 mantissa bits, and micro-batches round their matrix products differently by a few units in the last place.
    bf16 = train_precision(cfg.precision, torch.device("cpu")) == "bf16"
    assert cached == pytest.approx(full, rel=3e-2 if bf16 else 1e-4)


@pytest.mark.slow
def test_torchrun_two_ranks_train_and_rank_zero_saves(tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    out = tmp_path / "m.safetensors"
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "pictext", "train", "clip"]
    cmd += ["--steps", "2", "--batch-size", "8", "--precision", "fp32", "--out", str(out), "--micro-batch", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("saved") == 1 and out.is_file()


def test_form_only_shapes_in_unnamed_colours_never_show_a_named_colour():
    import numpy as np

    from pictext.data.shapes import COLORS

    world = ShapesWorld(grey_fraction=1.0, unnamed_colors=True, length=300)
    fills = [s.fill for i in range(300) for s in world.scene(i).shapes if not s.color]
    assert len(fills) > 100 and len(set(fills)) > 50
    for fill in fills:
        assert min(np.linalg.norm(np.subtract(fill, rgb)) for rgb in COLORS.values()) >= 110
    captions = [world[i][1] for i in range(40) if not world.scene(i).shapes[0].color]
    assert captions and not any(set(c.split()) & set(COLORS) for c in captions)  # named by form alone


def test_a_full_disk_leaves_the_last_state_whole_and_says_so(tmp_path, monkeypatch):
    import errno

    from pictext.errors import PictextError
    from pictext.files import WriteError

    model, world = _model_and_data(1000)
    train_clip(model, world, TINY.train, run_dir=tmp_path)  # 6 steps, states at 3 and 6
    before = (tmp_path / "state.pt").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pictext.training.torch.save", full)
    import dataclasses

    with pytest.raises(WriteError, match=r"state.pt: No space left on device \(disk full"):
        train_clip(_model_and_data(1000)[0], world, dataclasses.replace(TINY.train, steps=9), run_dir=tmp_path)
    assert (tmp_path / "state.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]  # no temporary file left behind
    with pytest.raises(PictextError, match="cannot write"):
        train_clip(_model_and_data(1000)[0], world, TINY.train, run_dir=tmp_path / "state.pt" / "x")


TRAIN_THEN_HANG = """
import sys, time
from pathlib import Path
import pictext.training as training
from pictext.cli import main

save_state = training.save_state

def save_then_hang(path, state):
    out = save_state(path, state)
    if state["step"] == 10:  # the step-10 state is whole on disk: the kill lands after it, mid-run
        Path(sys.argv[1]).touch()
        time.sleep(600)
    return out

training.save_state = save_then_hang
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_loses_at_most_one_interval(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    out, run, hanging = tmp_path / "m.safetensors", tmp_path / "run", tmp_path / "hanging"
    argv = ["train", "clip", "--data", "digits", "--steps", "40", "--batch-size", "16", "--precision", "fp32"]
    argv += ["--checkpoint-every", "5", "--out", str(out), "--run-dir", str(run)]
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_THEN_HANG, str(hanging), *argv], stdout=subprocess.DEVNULL)
    try:
        wait_for_hang(proc, hanging, 240, "training to save its step-10 state")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert load_state(run / "state.pt")["step"] == 10 and not out.exists()
    assert [p.name for p in run.iterdir()] == ["state.pt"]  # no half-written state beside it
    cmd = [sys.executable, "-m", "pictext", *argv]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ})
    assert result.returncode == 0, result.stderr[-2000:]
    state = load_state(run / "state.pt")
    assert state["step"] == 40 and len(state["logs"]) == 40 and out.is_file()
