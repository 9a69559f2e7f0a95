"""The training driver, for every family: 2 gloo ranks under torchrun follow one process, and a run killed
between checkpoints resumes to exactly the run that never stopped. The runs are `tests/family_runs.py`'s."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import family_runs
import pytest
import torch

RUNNER = Path(__file__).with_name("family_runs.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PICTEXT_QUIET": "1"}


def _run(tmp_path: Path, family: str, ranks: int, env: dict | None = None) -> dict:
    out = tmp_path / f"{family}-{ranks}.pt"
    if ranks == 1:
        cmd = [sys.executable, str(RUNNER), family, str(out)]
    else:
        torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
        cmd = [torchrun, "--standalone", "--nproc_per_node", str(ranks), str(RUNNER), family, str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env or ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out, weights_only=True)


def _flat(logs: list) -> list[float]:
    return [v for log in logs for v in (log.values() if isinstance(log, dict) else [log])]


@pytest.mark.slow
@pytest.mark.parametrize("family", family_runs.FAMILIES)
def test_two_ranks_follow_one_process(tmp_path, family):
    """Every step's logged losses (each the whole batch's, averaged over the ranks) agree within 1e-5: each rank
    took its share, drew the whole batch's randomness and cut out its rows, and gradients were averaged. (Weights
    are not compared one by one: where a gradient is pure rounding noise, such as a bias just before a
    normalization, Adam turns its sign into a full step of lr either way.) In float32 on any machine: under bf16
    each rank's half-size matrix products round differently from the whole batch's, which is not what this tests
    (the resume test below runs in whatever precision the machine is given)."""
    fp32 = {**ENV, "PICTEXT_TRAIN_PRECISION": "fp32"}
    one, two = _run(tmp_path, family, 1, fp32), _run(tmp_path, family, 2, fp32)
    assert len(one["logs"]) == len(two["logs"]) == family_runs.STEPS
    assert _flat(two["logs"]) == pytest.approx(_flat(one["logs"]), rel=1e-5, abs=1e-7)
    first, last = _flat(one["logs"][:1]), _flat(one["logs"][-1:])
    assert first != pytest.approx(last, rel=1e-3)  # the run trained: the losses moved


class _Crash(Exception):
    pass


@pytest.mark.parametrize("family", family_runs.FAMILIES)
def test_a_crashed_run_resumes_exactly(tmp_path, family):
    """States every 2 steps; a crash after step 3 loses step 3; the rerun picks up at 2 and ends where the run
    that never stopped ends, log for log."""
    run = family_runs.RUNS[family]
    straight, _ = run(None, lambda step, log: None)

    def crash(step: int, log: object) -> None:
        if step + 1 == 3:
            raise _Crash

    with pytest.raises(_Crash):
        run(tmp_path, crash)
    resumed, _ = run(tmp_path, lambda step, log: None)
    assert len(resumed) == family_runs.STEPS - 2
    saved = torch.load(tmp_path / "state.pt", weights_only=True)
    assert saved["step"] == family_runs.STEPS
    assert _flat(saved["logs"]) == pytest.approx(_flat(_as_logs(straight)), rel=1e-5, abs=1e-7)


def _as_logs(logs: list) -> list:
    """The family's returned logs in the layout the driver saves (dicts), for comparison."""
    return [log if isinstance(log, dict) else {"loss": log} for log in logs]


def test_a_state_without_a_part_the_run_now_keeps_is_refused_by_name(tmp_path):
    """A run folder saved before a part joined the state (the VQGAN's codebook-usage window) is a clear error
    naming it, not a KeyError."""
    from pictext.training import ResumeError, resume, run_state, save_state

    model = torch.nn.Linear(2, 2)
    save_state(tmp_path / "state.pt", run_state(None, model=model.state_dict(), step=2, logs=[]))
    assert resume(tmp_path, {"model": model})[1]["step"] == 2
    with pytest.raises(ResumeError, match="holds no 'usage'"):
        resume(tmp_path, {"model": model, "usage": torch.nn.Linear(1, 1)})
