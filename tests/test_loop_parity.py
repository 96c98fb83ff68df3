"""Like-for-like end to end: our TRPO's ``learn()`` and sb3-contrib's own ``TRPO.learn()`` (and our PPO's and
SB3's ``PPO.learn()``), from the same
weights, sub-env seeds, action noise ε (a = μ + σε), minibatch orders and CG start (x₀ = 0), must arrive
at the same networks after several updates.

``test_update_parity.py`` checks the two halves apart: rollouts collected both ways, and updates both
ways on our rollouts. This runs the two whole loops, each its own (SB3's ``collect_rollouts`` with
``VecNormalize``, its ``train()``, and whatever its ``learn()`` does between them), so nothing between
the halves is left to care. Measured on Hopper-v5: after 3 updates actor 3.4e-7, critic 1.1e-6; after 5,
2.4e-6 / 1.2e-5. Beyond that the two trajectories part, as any two float32 runs do: differences of 1e-7
in an action eventually flip a contact or a termination (Hopper-v5: after 7 updates the normaliser's
means differ by 2e-3 and the actors by 0.02), or are amplified near Pendulum-v1's unstable upright
(after 2 updates 2.3e-6, after 3: 3e-3 at one thread, 2e-4 at several, with no line-search decision
differing). So Hopper-v5 is compared after 3 updates, Pendulum-v1 after 2.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from experiments.envs import check_dependencies
from tests.test_update_parity import CATALOG, _build, _same_weights, _seeded_rollouts, _shared_noise


@pytest.mark.parametrize("algo, env_id, updates", [("trpo", "Hopper-v5", 3), ("trpo", "Pendulum-v1", 2),
                                                  ("ppo", "Hopper-v5", 3)])
def test_our_learn_equals_the_references_learn(algo, env_id, updates, tmp_path, monkeypatch):
    """TRPO against sb3-contrib's, PPO against SB3's. Hopper-v5 (zoo settings: normalised observations and
    rewards, terminations) and Pendulum-v1 (truncations only, every 200 steps), ``updates`` updates of
    each loop. Measured: TRPO Hopper-v5 6e-7 (actor) / 1.2e-6 (critic), Pendulum-v1 1.4e-5 / 7.6e-6;
    PPO Hopper-v5 3.9e-7 / 5.1e-7."""
    spec = dataclasses.replace(CATALOG.get(env_id), eval_episodes=1)
    check_dependencies(spec)
    ours, orun = _build(algo, spec, tmp_path, {})
    ref, rrun = _build(f"sb3-{algo}", spec, tmp_path, {})
    try:
        m, cfg = ref.model, ours.cfg
        actor, critic = _same_weights(ours, m.policy)
        seed, T, N = 1234, cfg.n_steps, cfg.n_envs
        ours.env, ours.buffer = _seeded_rollouts(spec, cfg, seed)
        _shared_noise(monkeypatch, updates, T, N, ours.env.single_action_space.shape[0])
        # SB3's get() draws one permutation per call: TRPO's policy step, then one per critic epoch; PPO's epochs
        calls, skip = (cfg.n_epochs, 0) if algo == "ppo" else (1 + cfg.n_critic_updates, 1)
        np.random.seed(123)
        perms = [np.random.permutation(T * N) for _ in range(calls * updates)]
        ours_orders = iter(torch.as_tensor((p % T) * N + p // T)     # SB3 flattens env-major, ours time-major
                           for u in range(updates) for p in perms[u * calls + skip:(u + 1) * calls])
        orun.total_steps, ours.step = updates * T * N, 0
        orun.log_update = lambda *a, **kw: None
        with monkeypatch.context() as mp:
            mp.setattr(torch, "randperm", lambda n, **kw: next(ours_orders))
            ours.learn()

        monkeypatch.setattr(torch, "randn_like", lambda b, **kw: torch.zeros_like(b))   # CG from x₀ = 0
        ref.venv.seed(seed)
        np.random.seed(123)
        m.learn(total_timesteps=updates * T * N)
        assert m.num_timesteps == ours.step == updates * T * N

        with torch.no_grad():
            d_actor = max(float((a.weight - b.weight).abs().max()) for a, b in actor)
            d_critic = max(float((a.weight - b.weight).abs().max()) for a, b in critic)
            d_log_std = float((m.policy.log_std - ours.policy.pi.log_std).abs().max())
        assert max(d_actor, d_log_std) < 1e-4 and d_critic < 1e-4, (d_actor, d_log_std, d_critic)
        if cfg.norm_obs:
            np.testing.assert_allclose(ours.env.obs_rms.mean, m.env.obs_rms.mean, rtol=1e-5, atol=1e-6)
    finally:
        ref.venv.close()
        rrun.close()
        orun.close()
