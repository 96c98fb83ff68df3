"""The NumPy rollout actor samples from the same distribution as the torch policy."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from algorithms.core.fast import NumpyActor
from algorithms.core.nets import ActorCritic


def test_statistics_equal_torch_policy():
    torch.manual_seed(0)
    for space in (gym.spaces.Discrete(4), gym.spaces.Box(-1, 1, (3,))):
        pi = ActorCritic(gym.spaces.Box(-np.inf, np.inf, (5,)), space, (32, 16))
        with torch.no_grad():
            for p in pi.parameters():
                p.add_(0.3 * torch.randn_like(p))
        obs = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
        ref = pi.dist(torch.as_tensor(obs))
        phi = NumpyActor.of(pi, 0).statistics(obs)
        if isinstance(space, gym.spaces.Discrete):   # logits are defined up to a constant: compare log-softmax
            phi = phi - np.log(np.exp(phi).sum(1, keepdims=True))
            expected = ref.logits
        else:
            expected = ref.mean
        np.testing.assert_allclose(phi, expected.detach().numpy(), rtol=1e-5, atol=1e-5)


def test_refresh_follows_the_weights():
    pi = ActorCritic(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2))
    actor = NumpyActor.of(pi, 0)
    with torch.no_grad():
        pi.pi.linear.bias.copy_(torch.tensor([5.0, -5.0]))
    actor.refresh()
    assert (actor.sample(np.zeros((500, 2), np.float32)) == 0).mean() > 0.99


@pytest.mark.parametrize("seed", [0, 1])
def test_categorical_sample_frequencies_match_probabilities(seed):
    pi = ActorCritic(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(3))
    with torch.no_grad():
        pi.pi.linear.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    obs = np.zeros((60000, 2), np.float32)
    probs = pi.dist(torch.as_tensor(obs[:1])).probs[0].detach().numpy()
    freq = np.bincount(NumpyActor.of(pi, seed).sample(obs), minlength=3) / len(obs)
    np.testing.assert_allclose(freq, probs, atol=0.01)


def test_gaussian_sample_moments_match():
    pi = ActorCritic(gym.spaces.Box(-1, 1, (2,)), gym.spaces.Box(-1, 1, (2,)), log_std_init=-0.5)
    with torch.no_grad():
        pi.pi.linear.bias.copy_(torch.tensor([0.3, -0.7]))
    obs = np.zeros((50000, 2), np.float32)
    a = NumpyActor.of(pi, 0).sample(obs)
    d = pi.dist(torch.as_tensor(obs[:1]))
    np.testing.assert_allclose(a.mean(0), d.mean[0].detach().numpy(), atol=0.01)
    np.testing.assert_allclose(a.std(0), d.std[0].detach().numpy(), atol=0.01)


@pytest.mark.parametrize("space", [gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,))])
def test_noise_drawn_for_the_rollout_gives_the_per_step_actions(space):
    """The rollout draws its T × N noise up front; the actions are bit for bit those of drawing per step."""
    pi = ActorCritic(gym.spaces.Box(-1, 1, (4,)), space)
    obs = np.random.default_rng(3).normal(size=(50, 2, 4)).astype(np.float32)
    bulk, per_step = NumpyActor.of(pi, 7), NumpyActor.of(pi, 7)
    noise = bulk.noise(50, 2)
    a = np.stack([bulk.sample(obs[t], noise[t]) for t in range(50)])
    b = np.stack([per_step.sample(obs[t]) for t in range(50)])
    assert a.dtype == b.dtype and np.array_equal(a, b)
    # the rollout's sampler (σ·ε formed up front for a Gaussian): the same bits again
    sample_t = bulk.sampler(noise)
    c = np.stack([sample_t(t, obs[t]) for t in range(50)])
    assert c.dtype == b.dtype and np.array_equal(c, b)


@pytest.mark.parametrize("shape", [(2, 11), (1, 17), (8, 3), (2,), (5,), (3, 1)])
def test_batch_mean_var_is_numpys_to_the_bit(shape):
    """The running normaliser's batch moments (algorithms/core/envs.py) against x.mean(0), x.var(0):
    the same bits, or every normalised observation and reward after it would drift from SB3's."""
    from algorithms.core.envs import batch_mean_var

    rng = np.random.default_rng(sum(shape))
    for x in (rng.normal(3.0, 1e3, size=shape), np.full(shape, 0.1), rng.standard_cauchy(size=shape)):
        m, v = batch_mean_var(x)
        assert np.array_equal(m, x.mean(0)) and np.array_equal(v, x.var(0))
        assert np.asarray(m).dtype == x.mean(0).dtype and np.ndim(v) == np.ndim(x.var(0))
    x32 = rng.normal(size=shape).astype(np.float32)                      # other dtypes: numpy's own
    assert all(np.array_equal(a, b) for a, b in zip(batch_mean_var(x32), (x32.mean(0), x32.var(0))))


def test_categorical_sample_is_the_plain_inverse_cdf_to_the_bit():
    """The sampler's ufunc form against the plain inverse CDF, a = #{k : c_k < u·c_K} with
    c = cumsum(exp(φ − max φ)): the same action for every (φ, u), ties and extreme logits included."""
    pi = ActorCritic(gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2))
    actor = NumpyActor.of(pi, 0)
    rng = np.random.default_rng(0)
    for _ in range(300):
        n, k = rng.integers(1, 9), rng.integers(1, 7)
        phi = (rng.standard_normal((n, k)) * rng.choice([1e-3, 1.0, 40.0])).astype(np.float32)
        phi[rng.random((n, k)) < 0.2] = phi.max()                       # ties
        u = np.concatenate([rng.random((n - 1, 1)), [[np.nextafter(1.0, 0.0)]]])   # and u just below 1
        actor.statistics = lambda obs, phi=phi: phi
        c = np.cumsum(np.exp(phi - phi.max(1, keepdims=True)), 1)
        expected = np.minimum((c < u * c[:, -1:]).sum(1), k - 1)
        a = actor.sample(np.zeros((n, 1), np.float32), u)
        assert a.dtype == expected.dtype and np.array_equal(a, expected)
