"""Shared core against independent oracles: GAE, distributions, PPO's clipped objective."""
import math

import numpy as np
import pytest
import torch

from algorithms.core.distributions import Categorical, DiagGaussian
from algorithms.core.gae import gae
from algorithms.ppo import clipped_surrogate


def gae_direct(r, v, v_next, term, end, gamma, lam):
    """Non-recursive: A_t = Σ_{l≥0} (γλ)^l δ_{t+l}, summed until the episode ends
    (inclusive), with δ_t = r_t + γ(1−term_t)V(s_{t+1}) − V(s_t)."""
    T, N = r.shape
    A = np.zeros((T, N))
    for i in range(N):
        for t in range(T):
            total = 0.0
            for l in range(T - t):
                k = t + l
                delta = r[k, i] + gamma * (1 - term[k, i]) * v_next[k, i] - v[k, i]
                total += (gamma * lam) ** l * delta
                if end[k, i]:
                    break
            A[t, i] = total
    return A


def test_gae_matches_direct_sum_with_terminations_and_truncations():
    g = np.random.default_rng(0)
    T, N = 40, 3
    r, v, vn = g.normal(size=(T, N)), g.normal(size=(T, N)), g.normal(size=(T, N))
    term = g.random((T, N)) < 0.08
    trunc = (g.random((T, N)) < 0.08) & ~term
    end = term | trunc
    assert term.any() and trunc.any()
    A, R = gae(*(torch.tensor(x, dtype=torch.float64) for x in (r, v, vn, term, end)), gamma=0.97, lam=0.9)
    expected = gae_direct(r, v, vn, term, end, 0.97, 0.9)
    np.testing.assert_allclose(A.numpy(), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(R.numpy(), expected + v, rtol=1e-10)


def test_gae_truncation_bootstraps_but_termination_does_not():
    one = torch.ones(1, 1)
    zero = torch.zeros(1, 1)
    # truncated (episode end, not terminated): A = r + γ V(s_T) − V(s)
    A, _ = gae(one, zero, 10 * one, zero, one, gamma=0.9, lam=0.95)
    assert A.item() == pytest.approx(1 + 0.9 * 10)
    A, _ = gae(one, zero, 10 * one, one, one, gamma=0.9, lam=0.95)
    assert A.item() == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(3))
def test_categorical_matches_torch(seed):
    g = torch.Generator().manual_seed(seed)
    logits, other = torch.randn(17, 5, generator=g) * 3, torch.randn(17, 5, generator=g)
    a = torch.randint(0, 5, (17,), generator=g)
    ours, ref = Categorical(logits), torch.distributions.Categorical(logits=logits)
    ref_q = torch.distributions.Categorical(logits=other)
    torch.testing.assert_close(ours.log_prob(a), ref.log_prob(a))
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    torch.testing.assert_close(ours.kl(Categorical(other)), torch.distributions.kl_divergence(ref, ref_q))


@pytest.mark.parametrize("seed", range(3))
def test_diag_gaussian_matches_torch(seed):
    g = torch.Generator().manual_seed(seed)
    mu, log_std = torch.randn(11, 3, generator=g), torch.randn(3, generator=g) * 0.5
    mu2, log_std2 = torch.randn(11, 3, generator=g), torch.randn(11, 3, generator=g) * 0.5
    x = torch.randn(11, 3, generator=g) * 2
    ours = DiagGaussian(mu, log_std)
    ref = torch.distributions.Independent(torch.distributions.Normal(mu, log_std.exp().expand_as(mu)), 1)
    ref2 = torch.distributions.Independent(torch.distributions.Normal(mu2, log_std2.exp()), 1)
    torch.testing.assert_close(ours.log_prob(x), ref.log_prob(x))
    torch.testing.assert_close(ours.entropy(), ref.entropy())
    torch.testing.assert_close(ours.kl(DiagGaussian(mu2, log_std2)), torch.distributions.kl_divergence(ref, ref2))


def test_gaussian_sample_statistics():
    d = DiagGaussian(torch.full((20000, 1), 2.0), torch.tensor([math.log(0.5)]))
    x = d.sample(torch.Generator().manual_seed(0))
    assert x.mean().item() == pytest.approx(2.0, abs=0.02)
    assert x.std().item() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    "ratio, adv, eps, expected",
    [
        (1.5, 2.0, 0.2, 1.2 * 2.0),    # A > 0, ρ above 1+ε: clipped
        (0.5, 2.0, 0.2, 0.5 * 2.0),    # A > 0, ρ below 1−ε: unclipped (min picks ρA)
        (1.1, 2.0, 0.2, 1.1 * 2.0),    # inside the interval
        (0.5, -2.0, 0.2, 0.8 * -2.0),  # A < 0, ρ below 1−ε: clipped
        (1.5, -2.0, 0.2, 1.5 * -2.0),  # A < 0, ρ above 1+ε: unclipped, pessimistic
        (3.0, 0.0, 0.1, 0.0),
    ],
)
def test_clipped_surrogate_hand_cases(ratio, adv, eps, expected):
    out = clipped_surrogate(torch.tensor([ratio]), torch.tensor([adv]), eps)
    assert out.item() == pytest.approx(expected)


def test_clipped_surrogate_gradient_vanishes_when_clipped():
    ratio = torch.tensor([1.5, 0.5], requires_grad=True)
    clipped_surrogate(ratio, torch.tensor([1.0, -1.0]), 0.2).sum().backward()
    assert ratio.grad.tolist() == [0.0, 0.0]
