"""SB3 reference runs through our runner: configs, contract files, the shared eval protocol."""
import csv
import dataclasses
import inspect
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from algorithms import registry
from algorithms.base import config_dict
from algorithms.sb3_ref import SB3A2C, SB3PPO, SB3TRPO, SB3A2CConfig, SB3PPOConfig, SB3TRPOConfig
from experiments import runner
from experiments.envs import env_fns, load_catalog
from experiments.evaluation import Evaluator
from experiments.runner import EVAL_SEED_OFFSET, RunContext, execute, resolve_hyperparams

CATALOG = load_catalog()
CONTRACT_SUMMARY = {"final_eval_return", "total_steps", "wall_s", "steps_per_second", "status", "hyperparams",
                    "env_id", "seed", "versions", "git_commit", "algo"}
REFS = ("sb3-ppo", "sb3-trpo", "sb3-a2c")


def read_csv(p):
    with open(p) as f:
        return list(csv.DictReader(f))


@pytest.fixture
def spy(monkeypatch):
    """Records what the runner sees: every evaluation's start observations and returns, the
    episode returns handed to log_update, and the algorithm object of each run."""
    rec = SimpleNamespace(starts=[], evals=[], episode_returns=[], algos=[])
    real_call, real_log, real_close = Evaluator.__call__, RunContext.log_update, RunContext.close

    def call(self, predict):
        rec.starts.append(self.start_observations())
        out = real_call(self, predict)
        rec.evals.append(out)
        return out

    def log_update(self, step, diagnostics, episode_returns=None):
        rec.episode_returns.append(None if episode_returns is None else list(episode_returns))
        return real_log(self, step, diagnostics, episode_returns)

    def close(self):
        rec.algos.append(self.algo)
        return real_close(self)

    monkeypatch.setattr(Evaluator, "__call__", call)
    monkeypatch.setattr(RunContext, "log_update", log_update)
    monkeypatch.setattr(RunContext, "close", close)
    return rec


# --- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg_cls, sb3_cls", [(SB3PPOConfig, "stable_baselines3:PPO"),
                                              (SB3TRPOConfig, "sb3_contrib:TRPO"),
                                              (SB3A2CConfig, "stable_baselines3:A2C")])
def test_config_defaults_are_sb3s(cfg_cls, sb3_cls):
    import importlib
    module, name = sb3_cls.split(":")
    sig = inspect.signature(getattr(importlib.import_module(module), name).__init__).parameters
    ours = {f.name: f.default for f in dataclasses.fields(cfg_cls)}
    shared = set(ours) & set(sig)
    assert {"learning_rate", "n_steps", "gamma", "gae_lambda", "normalize_advantage"} <= shared
    for k in shared:
        assert ours[k] == sig[k].default, k
    assert ours["net_arch"] == (64, 64) and ours["activation"] == "tanh" and ours["n_envs"] == 1


def test_registered_under_their_names():
    assert registry.get("sb3-ppo")[0] is SB3PPO
    assert registry.get("sb3-trpo")[0] is SB3TRPO
    assert registry.get("sb3-a2c")[0] is SB3A2C


@pytest.mark.parametrize("ours, ref", [("ppo", "sb3-ppo"), ("trpo", "sb3-trpo")])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_reference_settings_are_identical_to_ours(ours, ref, env_id):
    if ours not in registry.ALGORITHMS:
        pytest.skip(f"{ours} not registered yet")
    spec = CATALOG.get(env_id)
    a = config_dict(resolve_hyperparams(ours, spec, {})[1])
    b = config_dict(resolve_hyperparams(ref, spec, {})[1])
    assert set(a) <= set(b)
    assert {k: b[k] for k in a} == a


@pytest.mark.parametrize("trpo_like", ["sb3-trpo", "trpo", "npg"])
def test_mujoco_family_normalises_and_zoo_overrides_apply_to_both_sides(trpo_like):
    """The zoo's entries reach ours as well as the references (the full check, every env and
    key: tests/test_parity.py)."""
    _, cfg = resolve_hyperparams(trpo_like, CATALOG.get("HalfCheetah-v5"), {})
    assert cfg.norm_obs and cfg.norm_reward and cfg.n_envs == 2 and cfg.target_kl == 0.04
    assert cfg.n_steps == 1024 and cfg.cg_max_steps == 25 and cfg.n_critic_updates == 20
    _, cfg = resolve_hyperparams(trpo_like, CATALOG.get("Swimmer-v5"), {})
    assert cfg.gamma == 0.9999
    ppo_like = "sb3-ppo" if trpo_like == "sb3-trpo" else "ppo"
    _, cfg = resolve_hyperparams(ppo_like, CATALOG.get("ALE/Pong-v5"), {})
    assert cfg.n_envs == 8 and cfg.lr_schedule == "linear" and cfg.clip_range == 0.1


def _fake_run(env_id, total=1000, seed=0):
    spec = CATALOG.get(env_id)
    return SimpleNamespace(env_fns=lambda n: env_fns(spec, n), seed=seed, device=torch.device("cpu"),
                           total_steps=total, env_id=env_id)


@pytest.mark.parametrize("env_id, algo", [("CartPole-v1", "ppo"), ("Pendulum-v1", "ppo"),
                                          ("ALE/Pong-v5", "ppo"), ("Pendulum-v1", "sb3-a2c"),
                                          ("ALE/Pong-v5", "sb3-trpo")])
def test_networks_match_ours(env_id, algo, tmp_path, monkeypatch):
    """Same architecture: 64×64 tanh actor and critic MLPs (or the shared Nature CNN), the same
    parameter shapes."""
    from algorithms.core.nets import ActorCritic
    monkeypatch.chdir(tmp_path)
    cls, cfg = resolve_hyperparams("sb3-ppo" if algo == "ppo" else algo, CATALOG.get(env_id), {})
    ref = cls(cfg, _fake_run(env_id))
    env = env_fns(CATALOG.get(env_id), 1)[0]()
    ours = ActorCritic(env.observation_space, env.action_space, cfg.net_arch, cfg.activation)
    shapes = sorted(tuple(p.shape) for p in ours.parameters())
    assert sorted(tuple(p.shape) for p in ref.model.policy.parameters()) == shapes
    env.close()
    ref.venv.close()


# --- runs through the runner ----------------------------------------------------------------------

def _check_contract(out, algo, env_id, steps):
    summary = json.loads((out / "summary.json").read_text())
    assert CONTRACT_SUMMARY <= set(summary)
    assert summary["status"] == "ok", summary["error"]
    assert summary["algo"] == algo and summary["env_id"] == env_id
    progress, evals = read_csv(out / "progress.csv"), read_csv(out / "eval.csv")
    assert int(progress[-1]["step"]) >= steps and summary["steps_done"] == int(progress[-1]["step"])
    assert [int(r["step"]) for r in progress] == sorted({int(r["step"]) for r in progress})
    assert list(evals[0]) == ["step", "train_s", "return_mean", "return_std", "n_episodes"]
    assert int(evals[-1]["step"]) == int(progress[-1]["step"]) and int(evals[-1]["n_episodes"]) == 10
    assert float(summary["final_eval_return"]) == float(evals[-1]["return_mean"])
    assert sum(int(r["episodes"]) for r in progress) > 0
    for col in ("explained_variance", "value_loss", "learning_rate"):
        assert col in progress[0], col
    assert not list(out.glob(".*.tmp"))
    return summary, progress, evals


@pytest.mark.parametrize("algo, extra_cols", [
    ("sb3-ppo", ("pg_loss", "entropy", "approx_kl", "clip_fraction", "clip_range")),
    ("sb3-trpo", ("kl", "policy_objective", "line_search_success")),
    ("sb3-a2c", ("pg_loss", "entropy")),
])
def test_reference_writes_every_contract_file_on_cartpole(algo, extra_cols, tmp_path, spy):
    out = tmp_path / algo
    _, progress, evals = _check_contract_run(algo, "CartPole-v1", 3000, out)
    for col in extra_cols:
        assert col in progress[0], col
    # the training returns reported are the episodes SB3's own monitor buffer saw (same "episode" key)
    algo_obj = spy.algos[-1]
    reported = [r for rets in spy.episode_returns for r in rets]
    sb3_seen = [ep["r"] for ep in algo_obj.model.ep_info_buffer]
    assert reported and reported[-len(sb3_seen):] == sb3_seen
    assert all(r >= 8 for r in reported)           # raw CartPole returns (episode lengths)
    # the final eval is of the final policy: re-evaluating it reproduces eval.csv's last row
    again = Evaluator(CATALOG.get("CartPole-v1"), 10, EVAL_SEED_OFFSET + 0)(algo_obj.predict)
    assert float(again.mean()) == float(evals[-1]["return_mean"])


def _check_contract_run(algo, env_id, steps, out, overrides=None):
    execute(algo, env_id, 0, steps, out, overrides or {}, progress_bar=False)
    return _check_contract(out, algo, env_id, steps)


def test_reference_on_pendulum_with_vecnormalize(tmp_path, spy):
    """With observations and rewards normalised (VecNormalize), predict must see observations
    normalised with the training statistics."""
    out = tmp_path / "a2c"
    summary, progress, evals = _check_contract_run("sb3-a2c", "Pendulum-v1", 4096, out,
                                                   {"norm_obs": True, "norm_reward": True})
    assert summary["hyperparams"]["norm_obs"] and summary["hyperparams"]["norm_reward"]
    algo = spy.algos[-1]
    assert type(algo.venv).__name__ == "VecNormalize"
    reported = [r for rets in spy.episode_returns for r in rets]
    assert all(-2000 < r < 0 for r in reported)    # raw Pendulum returns, not normalised rewards
    again = Evaluator(CATALOG.get("Pendulum-v1"), 10, EVAL_SEED_OFFSET + 0)(algo.predict)
    assert float(again.mean()) == float(evals[-1]["return_mean"])


def test_eval_protocol_is_the_same_for_ours_and_sb3s(tmp_path, spy):
    """Every evaluation of either algorithm starts its episodes from the same states."""
    small = {"n_envs": 2, "n_steps": 256, "batch_size": 64, "n_epochs": 1}
    execute("ppo", "CartPole-v1", 5, 1024, tmp_path / "ours", small, progress_bar=False)
    n_ours = len(spy.starts)
    execute("sb3-ppo", "CartPole-v1", 5, 1024, tmp_path / "sb3", small, progress_bar=False)
    assert n_ours >= 2 and len(spy.starts) - n_ours >= 2
    for s in spy.starts[1:]:
        np.testing.assert_array_equal(s, spy.starts[0])
    assert len(np.unique(spy.starts[0], axis=0)) == 10        # 10 distinct start states (seeds + j)
    # a different run seed gives different eval start states
    other = Evaluator(CATALOG.get("CartPole-v1"), 10, EVAL_SEED_OFFSET + 6).start_observations()
    assert not np.array_equal(other, spy.starts[0])
    # the same number of evaluations at the same steps
    ours, sb3 = read_csv(tmp_path / "ours" / "eval.csv"), read_csv(tmp_path / "sb3" / "eval.csv")
    assert [r["step"] for r in ours] == [r["step"] for r in sb3]


def test_divergence_raised_in_the_callback_fails_the_run(tmp_path):
    class NanPPO(SB3PPO):
        name = "sb3-nan"

        def diagnostics(self):
            return {**super().diagnostics(), "pg_loss": float("nan")}

    registry.register("sb3-nan", NanPPO)
    try:
        s = execute("sb3-nan", "CartPole-v1", 0, 2048, tmp_path / "o",
                    {"n_envs": 2, "n_steps": 128, "batch_size": 64, "n_epochs": 1}, progress_bar=False)
    finally:
        registry.ALGORITHMS.pop("sb3-nan")
    assert s["status"] == "failed" and "pg_loss" in s["error"] and "step 256" in s["error"]
    assert len(read_csv(tmp_path / "o" / "progress.csv")) == 1


def test_state_dict_round_trip_and_resume(tmp_path, spy):
    overrides = {"n_envs": 2, "n_steps": 128, "batch_size": 64, "n_epochs": 1, "norm_obs": True,
                 "norm_reward": True}
    execute("sb3-ppo", "Pendulum-v1", 1, 512, tmp_path / "a", overrides, progress_bar=False)
    a = spy.algos[-1]
    state = a.state_dict()
    assert isinstance(state["sb3_zip"], bytes) and state["num_timesteps"] == 512
    cls, cfg = resolve_hyperparams("sb3-ppo", CATALOG.get("Pendulum-v1"), overrides)
    run = RunContext("sb3-ppo", CATALOG.get("Pendulum-v1"), 1, 1024, tmp_path / "b", progress_bar=False)
    try:
        b = cls(cfg, run)
        run.algo = b
        b.load_state_dict(state)
        obs = run.evaluator.start_observations()
        np.testing.assert_array_equal(b.predict(obs), a.predict(obs))
        b.learn()                                   # continues from 512 to 1024
    finally:
        run.close()
    assert [r["step"] for r in run.rows] == [768, 1024]
    assert b.model.num_timesteps == 1024


@pytest.mark.slow
@pytest.mark.parametrize("algo", REFS)
def test_reference_on_atari_smoke(algo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = execute(algo, "ALE/Pong-v5", 0, 1024, tmp_path / algo, progress_bar=False)
    assert summary["status"] == "ok" and math.isfinite(summary["final_eval_return"])
    assert runner.EVAL_SEED_OFFSET == EVAL_SEED_OFFSET
