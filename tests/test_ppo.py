"""PPO's learning-rate and clip-range schedules against SB3 itself (the oracle: an SB3 PPO run's
logged ``train/learning_rate`` and ``train/clip_range``) and against SB3's formula

    α_k = α_0 · (1 − t_k / B),   ε_k = ε_0 · (1 − t_k / B),

t_k = k · N · T the env steps collected including update k's rollout (k = 1, 2, …), B the budget.
"""
import csv
from pathlib import Path

import pytest

from algorithms.core.explicit import FlatAdam
from experiments.runner import execute

N_ENVS, N_STEPS, LR0, EPS0 = 2, 16, 1e-3, 0.2
LINEAR = {"n_envs": N_ENVS, "n_steps": N_STEPS, "batch_size": N_ENVS * N_STEPS, "n_epochs": 1,
          "learning_rate": LR0, "lr_schedule": "linear", "clip_range": EPS0, "clip_range_schedule": "linear"}


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "progress.csv") as f:
        return list(csv.DictReader(f))


def _run(algo: str, total: int, out: Path, monkeypatch=None) -> tuple[list[dict[str, str]], list[float]]:
    """Runs ``algo`` on CartPole-v1; returns progress.csv's rows and the lr of every optimiser step taken."""
    applied: list[float] = []
    if monkeypatch is not None:
        step = FlatAdam.step

        def spy(self, *a, **k):
            applied.append(self.lr)
            return step(self, *a, **k)
        monkeypatch.setattr(FlatAdam, "step", spy)
    summary = execute(algo, "CartPole-v1", 0, total, out, overrides=LINEAR, progress_bar=False, eval_episodes=1)
    assert summary["status"] == "ok"
    if monkeypatch is not None:
        monkeypatch.undo()
    return _rows(out), applied


@pytest.mark.parametrize("total", [160, 150])   # a multiple of N·T = 32, and one whose last rollout overshoots
def test_linear_schedules_read_progress_after_the_rollout_as_sb3(tmp_path, monkeypatch, total):
    ours, applied = _run("ppo", total, tmp_path / "ours", monkeypatch)
    sb3, _ = _run("sb3-ppo", total, tmp_path / "sb3")
    per_update = N_ENVS * N_STEPS
    n_updates = -(-total // per_update)
    assert [int(r["step"]) for r in ours] == [int(r["step"]) for r in sb3] == \
        [per_update * k for k in range(1, n_updates + 1)]
    for k, (o, s) in enumerate(zip(ours, sb3, strict=True), start=1):
        progress = 1.0 - per_update * k / total        # SB3's progress_remaining after rollout k
        for key, x0 in (("learning_rate", LR0), ("clip_range", EPS0)):
            if progress >= 0:
                assert float(o[key]) == pytest.approx(x0 * progress, abs=1e-15), (k, key)
                assert float(o[key]) == pytest.approx(float(s[key]), abs=1e-15), (k, key)   # the SB3 oracle
            else:
                # the documented deviation: SB3 goes negative on an overshooting last rollout, ours stops at 0
                assert float(s[key]) == pytest.approx(x0 * progress) and float(s[key]) < 0
                assert float(o[key]) == 0.0
    # the rate logged is the rate applied: one optimiser step per update (n_epochs 1, one minibatch)
    assert applied == pytest.approx([float(r["learning_rate"]) for r in ours], abs=1e-15)
