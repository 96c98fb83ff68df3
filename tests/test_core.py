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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gae_one_env_scalar_loop_matches_direct_sum_and_the_array_loop_bit_for_bit(dtype):
    """N = 1 takes a scalar loop: it must equal the direct sum, and the array loop (N > 1) on the
    same column bit for bit."""
    g = np.random.default_rng(5)
    T = 300
    r, v, vn = g.normal(size=(T, 1)), g.normal(size=(T, 1)), g.normal(size=(T, 1))
    term = g.random((T, 1)) < 0.03
    end = term | (g.random((T, 1)) < 0.03)
    one = [torch.tensor(x, dtype=dtype) for x in (r, v, vn, term, end)]
    A1, R1 = gae(*one, gamma=0.99, lam=0.95)
    A2, R2 = gae(*(torch.cat([x, x], 1) for x in one), gamma=0.99, lam=0.95)
    assert A1.dtype == dtype and A1.shape == (T, 1)
    assert torch.equal(A1[:, 0], A2[:, 0]) and torch.equal(R1[:, 0], R2[:, 0])
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    np.testing.assert_allclose(A1.numpy(), gae_direct(r, v, vn, term, end, 0.99, 0.95), rtol=tol, atol=tol)


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


def test_frozen_gaussian_owns_its_statistics():
    """A distribution built under no_grad from parameters (π_old, π_avg) must not change when
    the parameters are written in place afterwards (``set_flat_params``); a live one must
    still pass gradients to μ and log σ (oracle: torch.distributions' log-density)."""
    mean, log_std = torch.nn.Parameter(torch.zeros(4, 2)), torch.nn.Parameter(torch.tensor([0.1, -0.3]))
    with torch.no_grad():
        frozen = DiagGaussian(mean, log_std)
        sliced = DiagGaussian(mean, log_std)[1:3]
        mean.add_(1.0)
        log_std.add_(0.5)
    assert torch.equal(frozen.mean, torch.zeros(4, 2)) and torch.equal(sliced.mean, torch.zeros(2, 2))
    assert torch.equal(frozen.log_std, torch.tensor([0.1, -0.3]).expand(4, 2))
    assert torch.equal(sliced.log_std, torch.tensor([0.1, -0.3]).expand(2, 2))
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    DiagGaussian(mean, log_std).log_prob(x).sum().backward()
    ours = (mean.grad.clone(), log_std.grad.clone())
    mean.grad, log_std.grad = None, None
    torch.distributions.Normal(mean, log_std.exp()).log_prob(x).sum().backward()
    torch.testing.assert_close(ours, (mean.grad, log_std.grad))


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


# --- VecEnv normalisation (imports local: this section is appended by the ACER work) ------------


def _sb3_and_ours(n_envs: int = 3, seed: int = 5):
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from algorithms.core.envs import VecEnv

    fns = [lambda: gym.make("CartPole-v1")] * n_envs
    ours = VecEnv(fns, seed=seed, norm_obs=True, norm_reward=True, gamma=0.97)
    venv = DummyVecEnv(fns)
    venv.seed(seed)  # env i: reset(seed=seed + i), as ours
    ref = VecNormalize(venv, norm_obs=True, norm_reward=True, gamma=0.97)
    return ours, ref, ref.reset()


def test_vecenv_normalisation_matches_sb3_vecnormalize():
    """Oracle: SB3's VecNormalize over the same raw env sequence. Its obs_rms is updated with the
    observations it returns (post-reset after an episode end), and both those and the terminal
    observations are normalised with the updated statistics; ret_rms and rewards likewise."""
    ours, ref, ref_obs = _sb3_and_ours()
    np.testing.assert_allclose(ours.obs, ref_obs, rtol=1e-6, atol=1e-6)
    rng = np.random.default_rng(0)
    n_done = 0
    for _ in range(300):
        a = rng.integers(0, 2, ours.n)
        obs, r, te, tr = ours.step(a)
        ref_obs, ref_r, ref_done, infos = ref.step(a)
        assert np.array_equal(te | tr, ref_done)
        np.testing.assert_allclose(obs, ref_obs, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(r, ref_r, rtol=1e-6, atol=1e-6)
        for i in np.flatnonzero(ref_done):
            np.testing.assert_allclose(ours.final_obs[i], infos[i]["terminal_observation"], rtol=1e-6, atol=1e-6)
            n_done += 1
    assert n_done > 20
    np.testing.assert_allclose(ours.obs_rms.mean, ref.obs_rms.mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.obs_rms.var, ref.obs_rms.var, rtol=1e-9, atol=1e-12)
    assert ours.obs_rms.count == ref.obs_rms.count
    np.testing.assert_allclose(ours.ret_rms.var, ref.ret_rms.var, rtol=1e-9)


def test_vecenv_exposes_the_raw_data_of_a_step():
    """raw_obs / raw_final_obs / raw_rewards of a normalising VecEnv equal what an un-normalised
    VecEnv over the same envs returns; normalize_reward applies the current ret_rms without updating it."""
    import gymnasium as gym

    from algorithms.core.envs import VecEnv

    fns = [lambda: gym.make("Pendulum-v1", max_episode_steps=7)] * 2
    normed = VecEnv(fns, seed=1, norm_obs=True, norm_reward=True)
    raw = VecEnv(fns, seed=1)
    rng = np.random.default_rng(1)
    for _ in range(20):
        a = rng.uniform(-2, 2, (2, 1)).astype(np.float32)
        normed.step(a)
        o, r, _, _ = raw.step(a)
        np.testing.assert_array_equal(normed.raw_obs, o)
        np.testing.assert_array_equal(normed.raw_final_obs, raw.final_obs)
        np.testing.assert_array_equal(normed.raw_rewards.astype(np.float32), r)
    before = normed.ret_rms.state_dict()
    z = normed.normalize_reward(np.array([-3.0, 1.0]))
    np.testing.assert_allclose(z, np.array([-3.0, 1.0]) / np.sqrt(before["var"] + 1e-8), rtol=1e-6)
    assert normed.ret_rms.count == before["count"]
