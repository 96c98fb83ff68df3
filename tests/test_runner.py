"""The one-run contract: files and fields, determinism, bad input caught before training."""
import csv
import json
import subprocess
import sys

import pytest

from algorithms.base import ConfigError
from experiments.runner import execute

CONTRACT_SUMMARY = {"final_eval_return", "total_steps", "wall_s", "steps_per_second", "status", "hyperparams",
                    "env_id", "seed", "versions", "git_commit", "algo", "machine", "finished_at"}
PPO_SMALL = {"n_envs": 2, "n_steps": 64, "batch_size": 64, "n_epochs": 2}


def read_csv(p):
    with open(p) as f:
        return list(csv.DictReader(f))


def test_cli_writes_every_contract_file_and_field(tmp_path, root):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "experiments.run", "--algo", "ppo", "--env", "CartPole-v1", "--seed", "3",
                        "--steps", "1024", "--out", str(out), "--set", "n_envs=2", "--set", "n_steps=128",
                        "--set", "batch_size=64", "--set", "n_epochs=2"],
                       cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert CONTRACT_SUMMARY <= set(summary)
    assert summary["status"] == "ok" and summary["seed"] == 3 and summary["env_id"] == "CartPole-v1"
    assert summary["hyperparams"]["n_steps"] == 128 and summary["hyperparams"]["n_envs"] == 2
    assert {"torch", "gymnasium", "stable-baselines3", "python"} <= set(summary["versions"])
    assert summary["machine"]["cpu_count"] >= 1 and summary["machine"]["torch_threads"] == 1
    progress = read_csv(out / "progress.csv")
    assert len(progress) == 1024 // 256
    assert [int(r["step"]) for r in progress] == [256, 512, 768, 1024]
    for col in ("step", "wall_s", "episode_return", "approx_kl", "entropy", "pg_loss", "value_loss", "clip_fraction",
                "explained_variance", "learning_rate"):
        assert col in progress[0], col
    evals = read_csv(out / "eval.csv")
    assert list(evals[0]) == ["step", "train_s", "return_mean", "return_std", "n_episodes"]
    # the time accounting: training + evaluation = the run's wall time, inside the process's time
    assert summary["train_s"] + summary["eval_s"] == pytest.approx(summary["wall_s"], abs=2e-3)
    assert summary["eval_s"] > 0 and summary["process_s"] > summary["wall_s"]
    train = [float(r["train_s"]) for r in progress]
    assert train == sorted(train) and all(t <= float(r["wall_s"]) for t, r in zip(train, progress))
    assert int(evals[-1]["step"]) == 1024 and int(evals[-1]["n_episodes"]) == 10
    assert float(summary["final_eval_return"]) == float(evals[-1]["return_mean"])
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_same_seed_gives_identical_csvs(tmp_path):
    outs = []
    for name in ("a", "b"):
        execute("ppo", "Pendulum-v1", 7, 512, tmp_path / name, PPO_SMALL, progress_bar=False)
        outs.append(tmp_path / name)
    for f in ("eval.csv", "progress.csv"):
        a, b = read_csv(outs[0] / f), read_csv(outs[1] / f)
        for row in a + b:
            row.pop("wall_s", None)      # wall-clock times are the columns allowed to differ
            row.pop("train_s", None)
        assert a == b, f
    execute("ppo", "Pendulum-v1", 8, 512, tmp_path / "c", PPO_SMALL, progress_bar=False)
    assert read_csv(tmp_path / "c" / "progress.csv")[0]["pg_loss"] != read_csv(outs[0] / "progress.csv")[0]["pg_loss"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"algo": "nope"}, "unknown algorithm 'nope'"),
        ({"env_id": "NoSuchEnv-v0"}, "unknown env 'NoSuchEnv-v0'"),
        ({"overrides": {"clip_rnage": "0.1"}}, "unknown hyper-parameter(s) ['clip_rnage']"),
        ({"overrides": {"clip_range": "abc"}}, "clip_range: expected a float"),
        ({"overrides": {"n_steps": "1.5"}}, "n_steps: expected an int"),
        ({"steps": 0}, "--steps must be positive"),
        ({"steps": -5}, "--steps must be positive"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, kwargs, message):
    args = {"algo": "ppo", "env_id": "CartPole-v1", "seed": 0, "steps": 1000, "out": tmp_path / "out"}
    args.update(kwargs)
    with pytest.raises(ConfigError) as e:
        execute(**args, progress_bar=False)
    assert message in str(e.value)
    assert not (tmp_path / "out").exists()


def test_unknown_key_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match="valid keys for PPOConfig: .*clip_range.*n_steps"):
        execute("ppo", "CartPole-v1", 0, 100, tmp_path / "o", {"bogus": 1}, progress_bar=False)


def test_cli_bad_input_exit_code(tmp_path, root):
    r = subprocess.run([sys.executable, "-m", "experiments.run", "--algo", "ppo", "--env", "CartPole-v1", "--seed", "0",
                        "--steps", "100", "--out", str(tmp_path / "o"), "--set", "clip_range=abc"],
                       cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "clip_range: expected a float" in r.stderr
    assert not (tmp_path / "o").exists()


def test_refuses_to_mix_a_finished_run_of_another_config(tmp_path):
    out = tmp_path / "run"
    execute("ppo", "CartPole-v1", 0, 256, out, PPO_SMALL, progress_bar=False)
    before = (out / "summary.json").read_text()
    again = execute("ppo", "CartPole-v1", 0, 256, out, PPO_SMALL, progress_bar=False)   # same config: no-op
    assert again["status"] == "ok" and (out / "summary.json").read_text() == before
    with pytest.raises(ConfigError, match="different configuration"):
        execute("ppo", "CartPole-v1", 0, 256, out, {**PPO_SMALL, "n_epochs": 3}, progress_bar=False)
    assert (out / "summary.json").read_text() == before


def test_time_limit_truncation_bootstraps(tmp_path):
    """Pendulum only ever truncates (200 steps): the rollout must hand GAE V(s_T), not 0."""
    from algorithms.core.buffer import RolloutBuffer
    from algorithms.core.envs import VecEnv
    from algorithms.core.nets import ActorCritic
    from experiments.envs import env_fns, load_catalog

    env = VecEnv(env_fns(load_catalog().get("Pendulum-v1"), 2), seed=0)
    pi = ActorCritic(env.single_observation_space, env.single_action_space)
    with __import__("torch").no_grad():
        pi.v.bias.fill_(5.0)
    buf = RolloutBuffer(250, env)
    buf.collect(pi)
    ends = buf.episode_end.bool()
    assert ends.sum() == 2 and buf.terminated.sum() == 0
    assert (buf.next_values[ends] != 0).all()
    t, i = ends.nonzero()[0].tolist()
    # V of the final observation, not of the reset observation that follows in the buffer
    assert buf.next_values[t, i] != buf.values[t + 1, i]


def test_action_space_the_algorithm_cannot_handle(tmp_path):
    from algorithms import registry
    from algorithms.ppo import PPO

    class DiscreteOnly(PPO):
        name = "discrete-only"
        continuous = False

    registry.register("discrete-only", DiscreteOnly)
    try:
        with pytest.raises(ConfigError, match="cannot handle action space Box"):
            execute("discrete-only", "Pendulum-v1", 0, 100, tmp_path / "o", progress_bar=False)
    finally:
        registry.ALGORITHMS.pop("discrete-only")
    assert not (tmp_path / "o").exists()


def test_missing_optional_dependency_names_the_install_hint(tmp_path, monkeypatch):
    from experiments import envs
    monkeypatch.setitem(envs.OPTIONAL_DEPS, "mujoco", ("mujoco_not_installed_here", "pip install 'gymnasium[mujoco]'"))
    with pytest.raises(ConfigError, match=r"needs the optional package 'mujoco_not_installed_here': pip install"):
        execute("ppo", "Hopper-v5", 0, 100, tmp_path / "o", progress_bar=False)
    assert not (tmp_path / "o").exists()


def test_a_variant_preset_cannot_be_overridden(tmp_path):
    with pytest.raises(ConfigError, match="variant 'acer-no-replay' fixes replay_ratio=0"):
        execute("acer-no-replay", "CartPole-v1", 0, 100, tmp_path / "o", {"replay_ratio": 4}, progress_bar=False)
    assert not (tmp_path / "o").exists()
