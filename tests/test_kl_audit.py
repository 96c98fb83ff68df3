"""experiments/kl_audit.py: its KL oracle, and the audit of a real (catalog-resolved) TRPO run."""
from __future__ import annotations

import math

import gymnasium as gym
import pytest
import torch

from algorithms.core.nets import ActorCritic
from experiments.kl_audit import actor_state, audit, true_mean_kl


def test_true_mean_kl_closed_form_for_a_log_std_shift():
    """μ unchanged, log σ: ℓ₀ → ℓ₁ per dimension: KL = Σ_d ℓ₁ − ℓ₀ + e^{2ℓ₀}/(2e^{2ℓ₁}) − ½."""
    torch.manual_seed(0)
    policy = ActorCritic(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,)), (8,))
    before = actor_state(policy)
    with torch.no_grad():
        policy.pi.log_std.copy_(torch.tensor([0.3, -0.2]))
    obs = torch.randn(16, 3)
    expected = sum(l1 + 1 / (2 * math.exp(2 * l1)) - 0.5 for l1 in policy.pi.log_std.double().tolist())
    assert true_mean_kl(policy, before, actor_state(policy), obs) == pytest.approx(expected, rel=1e-12)
    assert true_mean_kl(policy, before, before, obs) == 0.0


def test_audit_of_one_trpo_update_on_pendulum(tmp_path):
    """Pendulum-v1's resolved TRPO settings (2 envs × 1024 steps): one update, whose logged
    kl equals the independently recomputed KL and is within δ."""
    res = audit("trpo", "Pendulum-v1", 2048, 0, out=tmp_path)
    (rec,) = res.records
    assert rec.step == 2048 and rec.max_kl == 0.01
    assert rec.accepted
    assert rec.logged_kl == pytest.approx(rec.true_kl, rel=1e-4) and rec.true_kl <= rec.max_kl
    s = res.summary()
    assert s["updates"] == 1 and s["accepted_above_delta"] == 0
    assert "updates=1" in res.line()
