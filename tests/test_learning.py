"""Learning curves against thresholds (slow: `pytest -m slow`)."""
import pytest

from experiments.runner import execute


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppo_solves_cartpole_within_100k_steps(tmp_path, seed):
    s = execute("ppo", "CartPole-v1", seed, 100_000, tmp_path / "run", progress_bar=False)
    assert s["status"] == "ok"
    assert s["final_eval_return"] >= 475


@pytest.mark.slow
def test_ppo_learns_pendulum(tmp_path):
    s = execute("ppo", "Pendulum-v1", 0, 200_000, tmp_path / "run", progress_bar=False)
    assert s["final_eval_return"] >= -400
