"""ACER's replay as Baselines and with SB3's normalisation at use time: memory holds raw
observations, rewards and time-limit finals; on-policy and replayed batches are normalised with the
VecEnv's current statistics; n ~ Poisson(replay_ratio) replays per step; exact resume."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from algorithms.acer import ACER, ACERConfig
from algorithms.core.envs import VecEnv
from experiments.envs import env_fns, load_catalog


class FakeRun:
    def __init__(self, env_id: str, total_steps: int = 1000, seed: int = 0):
        self.spec, self.total_steps, self.seed = load_catalog().get(env_id), total_steps, seed
        self.device, self.rows = torch.device("cpu"), []

    def make_env(self, n_envs, *, gamma=0.99, norm_obs=False, norm_reward=False):
        return VecEnv(env_fns(self.spec, n_envs), seed=self.seed, norm_obs=norm_obs, norm_reward=norm_reward,
                      gamma=gamma)

    def log_update(self, step, diagnostics):
        self.rows.append({"step": step, **diagnostics})


# --- raw storage, normalisation at use time, Baselines' replay sampling -----------------------


def _normed_run(steps: int = 880, **cfg):
    """ACER on Pendulum with obs and reward normalisation; 880 steps = 220 per env, so every env
    is truncated once (Pendulum's 200-step limit) inside memory."""
    run = FakeRun("Pendulum-v1", steps)
    algo = ACER(ACERConfig(norm_obs=True, norm_reward=True, replay_start=160, **cfg), run)
    algo.learn()
    return algo, run


def test_memory_holds_raw_observations_rewards_and_finals():
    """Oracle: an un-normalised VecEnv with the same seed, stepped with the stored (clipped) actions."""
    algo, _ = _normed_run()
    mem, N = algo.memory, algo.cfg.n_envs
    raw = FakeRun("Pendulum-v1").make_env(N)  # no normalisation
    low, high = raw.single_action_space.low, raw.single_action_space.high
    assert mem.size == 11 and algo.env.obs_rms.count > 100  # the statistics did move
    n_finals = 0
    for slot in range(mem.size):
        np.testing.assert_array_equal(mem.obs[slot][:, 0], raw.obs)
        for t in range(mem.T):
            o, _, te, tr = raw.step(np.clip(mem.actions[slot][:, t], low, high))
            np.testing.assert_array_equal(mem.rewards[slot][:, t], raw.raw_rewards.astype(np.float32))
            np.testing.assert_array_equal(mem.obs[slot][:, t + 1], o)
            for i in np.flatnonzero(tr & ~te):
                ft, fn, fo = mem.finals[slot]
                np.testing.assert_array_equal(fo[(ft == t) & (fn == i)][0], raw.final_obs[i])
                n_finals += 1
    assert n_finals == N


def _by_hand(env, obs, rew):
    """The VecNormalize formulas applied by hand with env's current statistics."""
    m, v, rv = env.obs_rms.mean, env.obs_rms.var, env.ret_rms.var
    return (np.clip((obs - m) / np.sqrt(v + 1e-8), -10, 10), np.clip(rew / np.sqrt(rv + 1e-8), -10, 10))


def test_replayed_and_on_policy_batches_use_the_current_statistics():
    algo, _ = _normed_run()
    mem, env, N = algo.memory, algo.env, algo.cfg.n_envs
    env.obs_rms.mean = env.obs_rms.mean + np.array([0.3, -0.2, 1.0])  # change the running statistics
    env.obs_rms.var = env.obs_rms.var * np.array([4.0, 0.25, 9.0])
    env.ret_rms.var = env.ret_rms.var * 7.0
    rng = copy.deepcopy(algo.rng)
    batch = algo.replay_batch()
    slots, envs = rng.integers(0, mem.size, N), np.arange(N)  # Baselines: one slot per env
    obs, rew = _by_hand(env, mem.obs[slots, envs], mem.rewards[slots, envs])
    np.testing.assert_allclose(batch.obs.numpy(), obs.swapaxes(0, 1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batch.rewards.numpy(), rew.T, rtol=1e-6, atol=1e-6)
    # the time-limit finals (one slot holds every env's step 200)
    (slot, (ft, fn, fo)), = mem.finals.items()
    b = mem.get(np.full(N, slot), envs, normalizer=env)
    np.testing.assert_allclose(b.final_obs.numpy(), _by_hand(env, fo[np.argsort(fn)], 0.0)[0], rtol=1e-6, atol=1e-6)
    # the on-policy batch: raw arrays normalised with the statistics after its k steps
    batch, arrays = algo.collect()
    obs, rew = _by_hand(env, arrays["obs"], arrays["rewards"])
    np.testing.assert_allclose(batch.obs.numpy(), obs, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batch.rewards.numpy(), rew, rtol=1e-6, atol=1e-6)


def test_replays_per_step_are_poisson_by_default():
    """Baselines: n ~ Poisson(replay_ratio) replays per on-policy step; mean ≈ variance ≈ 4 over 100
    steps (sd 0.2 of the mean, 0.6 of the variance; bounds at 4-5 sd)."""
    assert ACERConfig().replay_poisson
    run = FakeRun("CartPole-v1", 80 * 101)
    algo = ACER(ACERConfig(replay_start=160, net_arch=(8,)), run)
    algo.learn()
    n = np.array([r["replay_updates"] for r in run.rows])
    assert n[0] == 0 and n.min() == 0
    assert abs(n[1:].mean() - 4) < 1.0 and 1.5 < n[1:].var() < 7


def test_resume_from_state_is_exact():
    """Learn 800 steps in one go, or stop at 400 (state saved as the runner does), load into a fresh
    ACER and continue: the logged rows after 400 are identical (memory, Poisson draws, statistics)."""
    full_run = FakeRun("Pendulum-v1", 800)
    torch.manual_seed(0)
    ACER(ACERConfig(norm_obs=True, norm_reward=True, replay_start=160), full_run).learn()
    assert any(0 < r["replay_updates"] != 4 for r in full_run.rows[5:])

    class Stop(Exception):
        pass

    saved = {}
    part = FakeRun("Pendulum-v1", 800)
    torch.manual_seed(0)
    algo = ACER(ACERConfig(norm_obs=True, norm_reward=True, replay_start=160), part)

    def log_update(step, diag):
        part.rows.append({"step": step, **diag})
        if step == 400:
            saved.update(copy.deepcopy({"algo": algo.state_dict(), "env": algo.env.state_dict(include_envs=True),
                                        "torch": torch.get_rng_state()}))
            raise Stop

    part.log_update = log_update
    with pytest.raises(Stop):
        algo.learn()
    rest = FakeRun("Pendulum-v1", 800, seed=3)
    other = ACER(ACERConfig(norm_obs=True, norm_reward=True, replay_start=160), rest)
    other.load_state_dict(saved["algo"])
    other.env.load_state_dict(saved["env"])
    torch.set_rng_state(saved["torch"])
    other.learn()
    np.testing.assert_equal(part.rows, full_run.rows[:5])  # (NaN == NaN here: no replay yet)
    np.testing.assert_equal(rest.rows, full_run.rows[5:])
