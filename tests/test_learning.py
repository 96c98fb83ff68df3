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


@pytest.mark.slow
def test_ppo_learns_minatar_breakout(tmp_path):
    """MinAtar Breakout-v0 (random policy 0.49): the zoo's Atari PPO settings on the MinAtar trunk
    reach 3.2 at 150k steps with seed 0 on this machine; the bar is 4× the random score."""
    s = execute("ppo", "MinAtar/Breakout-v0", 0, 150_000, tmp_path / "run", progress_bar=False)
    assert s["status"] == "ok" and s["final_eval_return"] >= 4 * 0.49
