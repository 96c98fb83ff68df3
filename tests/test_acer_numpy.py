"""Continuous ACER's update written out in NumPy (``NumpySDN``, ``FlatRMSprop``) against its oracles:
autograd on ``continuous_terms``' loss (every gradient, term and diagnostic), the Retrace recursion against
the seed's direct sum, ``torch.optim.RMSprop`` / SB3's ``RMSpropTFLike`` on the same gradients, autograd
of the per-step objective and of the KL w.r.t. φ, and ACER trained through either path."""
from __future__ import annotations

import copy
import dataclasses
import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch
from test_acer import FakeRun, direct_sum

from algorithms.acer import ACER, ACERConfig
from algorithms.acer_continuous import SDNet, continuous_terms
from algorithms.acer_numpy import NumpySDN, retrace_pair
from algorithms.core.acer_ops import retrace
from algorithms.core.distributions import DiagGaussian
from algorithms.core.explicit import FlatParams, FlatRMSprop
from algorithms.core.replay import Trajectory

T, B, D, OBS = 5, 3, 2, 4


def _nets(hidden=(16, 12), activation="tanh", seed=0):
    torch.manual_seed(seed)
    spaces = gym.spaces.Box(-1, 1, (OBS,)), gym.spaces.Box(-1, 1, (D,))
    net, avg = SDNet(*spaces, hidden, activation), SDNet(*spaces, hidden, activation, -0.5)
    with torch.no_grad():   # away from the orthogonal init (small heads) so that every term matters
        for p, q in zip(net.parameters(), avg.parameters()):
            p.add_(0.4 * torch.randn_like(p))
            q.copy_(p + 0.1 * torch.randn_like(p))
    return net, avg


def _batch(seed=1, T=T, B=B, D=D, obs=OBS) -> Trajectory:
    """A (T, B) batch with a termination and time-limit truncations (their final observations), one of them at
    the last step (whose V(s_{t+1}) is the final observation's, not V(s_T))."""
    g = torch.Generator().manual_seed(seed)
    terminated, end = torch.zeros(T, B), torch.zeros(T, B)
    finals = [(T - 1, B - 1)] + [(t, b) for t, b in ((2, 1), (3, 2)) if t < T - 1 and b < B - 1]
    if T > 2:
        terminated[1, 0] = end[1, 0] = 1.0
    for t, b in finals:
        end[t, b] = 1.0
    return Trajectory(
        obs=torch.randn(T + 1, B, obs, generator=g), actions=torch.randn(T, B, D, generator=g),
        rewards=torch.randn(T, B, generator=g), terminated=terminated, episode_end=end,
        stats={"mean": 0.8 * torch.randn(T, B, D, generator=g),
               "log_std": -0.7 + 0.3 * torch.randn(T, B, D, generator=g)},
        final_t=torch.tensor([t for t, _ in finals]), final_b=torch.tensor([b for _, b in finals]),
        final_obs=torch.randn(len(finals), obs, generator=g))


def _cfg(**flags) -> ACERConfig:
    """Away from the defaults wherever a setting enters the update (λ, γ, c, δ, q_coef, ent_coef, n)."""
    return dataclasses.replace(ACERConfig(c=1.5, delta=0.3, q_coef=0.7, ent_coef=0.05, sdn_samples=3,
                                          lambda_retrace=0.6, gamma=0.9), **flags)


FLAGS = [dict(zip(("truncation", "trust_region", "retrace"), v)) for v in itertools.product([True, False], repeat=3)]


def _numpy_gradient(net, avg, batch, cfg, seed=7):
    """NumpySDN's gradient (every entry of ``flat.grad`` must be written: it starts as NaN) and terms."""
    flat, avg_flat = FlatParams(list(net.parameters())), FlatParams(list(avg.parameters()))
    flat.grad.fill_(float("nan"))
    torch.manual_seed(seed)    # the terms draw a'_t and the SDN's u_i from torch's generator
    return flat, NumpySDN(net, avg, flat, avg_flat).gradient(batch, cfg)


def _double(batch: Trajectory) -> Trajectory:
    f = lambda x: x.double() if x.is_floating_point() else x  # noqa: E731
    return Trajectory(obs=f(batch.obs), actions=f(batch.actions), rewards=f(batch.rewards),
                      terminated=f(batch.terminated), episode_end=f(batch.episode_end),
                      stats={k: f(v) for k, v in batch.stats.items()}, final_t=batch.final_t,
                      final_b=batch.final_b, final_obs=f(batch.final_obs))


def _autograd(net, avg, batch, cfg, seed=7):
    """The oracle: ``continuous_terms``' loss differentiated by autograd, in float64 on copies of the nets
    (the same draws: torch's generator gives a'_t and u_i in float32 either way)."""
    net, avg = copy.deepcopy(net).double(), copy.deepcopy(avg).double()
    torch.manual_seed(seed)
    ref = continuous_terms(net, avg, _double(batch), cfg)
    ref["loss"].backward()
    return ref, torch.cat([p.grad.reshape(-1) for p in net.parameters()])


def _assert_grads_close(flat, g_ref):
    """float32 against float64, relative to each parameter's own gradient scale (without truncation the
    policy's reaches 10¹¹ here while the critic's stays near 1: one tolerance for all would not check the
    critic; A's output bias has a gradient of exactly 0, the K actions' terms cancelling). ρ_t reaches 10¹²
    in this batch: log ρ_t is a difference of log-densities of order 30, so float32 carries ~10⁻⁵ of relative
    error in ρ_t (torch's float32 autograd as well) and in the gradients ρ_t dominates."""
    for mine, ref_g in zip(flat.views(flat.grad), flat.views(g_ref)):
        torch.testing.assert_close(mine.double(), ref_g, rtol=1e-4, atol=1e-4 * max(1.0, float(ref_g.abs().max())))


@pytest.mark.parametrize("flags", FLAGS, ids=lambda f: "-".join(k for k, v in f.items() if v) or "none")
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_numpy_gradient_terms_and_diagnostics_equal_autograd(flags, activation):
    net, avg = _nets(activation=activation)
    batch, cfg = _batch(), _cfg(**flags)
    ref, g_ref = _autograd(net, avg, batch, cfg)
    flat, out = _numpy_gradient(net, avg, batch, cfg)
    _assert_grads_close(flat, g_ref)
    for key in ("q_ret", "q_opc", "g", "k", "z", "V", "rho", "weight"):    # float32 against float64, as above
        want = ref[key].detach()
        torch.testing.assert_close(torch.from_numpy(out[key]).double(), want, rtol=1e-4,
                                   atol=1e-6 * max(1.0, float(want.abs().max())), msg=key)
    assert out["diag"].keys() == ref["diag"].keys()          # the same columns in progress.csv, in order
    for key, want in ref["diag"].items():     # pg_loss: the mean of ρ-weighted terms of both signs (10¹² here)
        rtol = 5e-4 if key == "pg_loss" else 1e-4
        np.testing.assert_allclose(out["diag"][key], float(want), rtol=rtol, atol=1e-6, err_msg=key)
    if flags["trust_region"]:          # the projection is exercised, else the test would not test z*
        assert 0 < out["diag"]["tr_active_frac"] < 1
    if flags["truncation"]:            # and the truncation both ways
        assert 0 < out["diag"]["frac_truncated"] < 1


@pytest.mark.parametrize("hidden", [(), (8,), (16, 12, 10)])
def test_numpy_gradient_any_depth(hidden):
    """No hidden layer (the trunks are the identity, A's input is [s; a]) to three."""
    net, avg = _nets(hidden=hidden)
    batch, cfg = _batch(), _cfg()
    _, g_ref = _autograd(net, avg, batch, cfg)
    flat, _ = _numpy_gradient(net, avg, batch, cfg)
    _assert_grads_close(flat, g_ref)


@pytest.mark.parametrize("T_, B_, D_, n", [(1, 1, 1, 1), (2, 1, 3, 1), (4, 2, 1, 2)])
def test_numpy_gradient_small_shapes(T_, B_, D_, n):
    """One step, one env, one action dimension, one SDN sample: no axis of size 1 is squeezed or broadcast
    wrongly (the truncation falls on the last step)."""
    torch.manual_seed(0)
    spaces = gym.spaces.Box(-1, 1, (OBS,)), gym.spaces.Box(-1, 1, (D_,))
    net, avg = SDNet(*spaces, (8,), "tanh"), SDNet(*spaces, (8,), "tanh", -0.5)
    with torch.no_grad():
        for p, q in zip(net.parameters(), avg.parameters()):
            p.add_(0.4 * torch.randn_like(p))
            q.copy_(p + 0.1 * torch.randn_like(p))
    batch, cfg = _batch(T=T_, B=B_, D=D_), _cfg(sdn_samples=n)
    ref, g_ref = _autograd(net, avg, batch, cfg)
    flat, out = _numpy_gradient(net, avg, batch, cfg)
    _assert_grads_close(flat, g_ref)
    for key in ("q_ret", "z"):
        torch.testing.assert_close(torch.from_numpy(out[key]).double(), ref[key].detach(), rtol=1e-4, atol=1e-6)


def test_numpy_gradient_without_truncated_episodes():
    """A batch with no time-limit final observation (V of s_0..s_T only)."""
    net, avg = _nets()
    batch = dataclasses.replace(_batch(), final_t=torch.zeros(0, dtype=torch.long),
                                final_b=torch.zeros(0, dtype=torch.long), final_obs=torch.zeros(0, OBS))
    _, g_ref = _autograd(net, avg, batch, _cfg())
    flat, _ = _numpy_gradient(net, avg, batch, _cfg())
    _assert_grads_close(flat, g_ref)


def test_retrace_pair_equals_the_direct_sum_and_the_torch_recursion():
    """Both targets of one recursion (c = λ min(1, ρ^{1/d}) and c ≡ 1) against the seed's direct sum."""
    rng = np.random.default_rng(0)
    T, N, gamma = 9, 6, 0.9
    r, q, nv = rng.normal(size=(3, T, N))
    c = np.stack([rng.uniform(0, 1, (T, N)), np.ones((T, N))])
    term = rng.random((T, N)) < 0.15
    end = term | (rng.random((T, N)) < 0.15)
    assert term.any() and (end & ~term).any()
    got = retrace_pair(r, q, nv, c, term.astype(float), end.astype(float), gamma)
    for j in range(2):
        np.testing.assert_allclose(got[j], direct_sum(r, q, nv, c[j], term, end, gamma), rtol=1e-10, atol=1e-10)
        t = [torch.from_numpy(np.asarray(x, np.float64)) for x in (r, q, nv, c[j], term, end)]
        np.testing.assert_allclose(got[j], retrace(*t, gamma).numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("truncation", [True, False])
def test_g_is_the_gradient_of_the_objective_in_statistics_space(truncation):
    """g = ∇_φ [ρ̄_t (Q^opc_t − V_t) log f(a_t|φ) + (1 − c/ρ'_t)₊ (Q̃(s_t, a'_t) − V_t) log f(a'_t|φ)
    + c_e H(f(·|φ))], the closed form against autograd at φ = (μ, log σ) of π(·|s_t)."""
    net, avg = _nets()
    batch, cfg = _batch(), _cfg(truncation=truncation)
    torch.manual_seed(7)
    out = continuous_terms(net, avg, batch, cfg)
    with torch.no_grad():
        obs = batch.obs[:-1].reshape(T * B, OBS)
        pi = DiagGaussian(net.mean(net.pi_trunk(obs)).view(T, B, D), net.log_std)
        torch.manual_seed(7)
        samples = pi.mean + pi.std * torch.randn(1 + cfg.sdn_samples, T, B, D)   # a'_t, u_1..u_n as drawn
        acts = torch.cat([batch.actions.unsqueeze(0), samples]).view(-1, T * B, D)
        A = net.advantage(net.critic_features(obs), acts).view(-1, T, B)
        q_ap_minus_v = A[1] - A[2:].mean(0)                                      # Q̃(s, a'_t) − V(s_t)
    a_p = samples[0]
    phi = torch.cat([pi.mean, pi.log_std], -1).requires_grad_(True)
    f = DiagGaussian(phi[..., :D], phi[..., D:])
    adv = out["q_opc"] - out["V"]
    objective = out["weight"] * adv * f.log_prob(batch.actions) + cfg.ent_coef * f.entropy()
    if truncation:
        mu = DiagGaussian(batch.stats["mean"], batch.stats["log_std"])
        rho_p = (pi.log_prob(a_p) - mu.log_prob(a_p)).exp()                      # ρ'_t
        assert (rho_p > cfg.c).any() and (rho_p < cfg.c).any()
        objective = objective + (1 - cfg.c / rho_p).clamp(min=0) * q_ap_minus_v * f.log_prob(a_p)
    want = torch.autograd.grad(objective.sum(), phi)[0]
    torch.testing.assert_close(out["g"], want, rtol=1e-4, atol=1e-5)


def test_k_is_the_autograd_gradient_of_the_kl():
    p = DiagGaussian(torch.randn(6, D), 0.3 * torch.randn(6, D))
    phi = torch.cat([torch.randn(6, D), 0.3 * torch.randn(6, D)], -1).requires_grad_(True)
    q = DiagGaussian(phi[:, :D], phi[:, D:])
    want = torch.autograd.grad(p.kl(q).sum(), phi)[0]
    torch.testing.assert_close(torch.cat(p.kl_grad(q.detach()), -1), want)


@pytest.mark.parametrize("tf_like", [False, True])
def test_flat_rmsprop_equals_torch_and_tf_like(tf_like):
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

    torch.manual_seed(0)
    ref = [torch.randn(4, 3, requires_grad=True), torch.randn(5, requires_grad=True)]
    ours = [p.detach().clone() for p in ref]
    flat = FlatParams(ours)
    kw = dict(lr=0.01, alpha=0.99, eps=1e-5)
    opt = RMSpropTFLike(ref, **kw) if tf_like else torch.optim.RMSprop(ref, **kw)
    flat_opt = FlatRMSprop(flat, tf_like=tf_like, **kw)
    for _ in range(5):
        grads = [torch.randn_like(p) for p in ref]
        for p, g in zip(ref, grads):
            p.grad = g.clone()
        torch.cat([g.reshape(-1) for g in grads], out=flat.grad)
        opt.step()
        flat_opt.step()
        torch.testing.assert_close(flat.theta, torch.cat([p.detach().reshape(-1) for p in ref]))
    state = flat_opt.state_dict()
    other = FlatRMSprop(FlatParams([p.clone() for p in ours]), tf_like=tf_like, **kw)
    other.load_state_dict(state)
    assert torch.equal(other.square_avg, flat_opt.square_avg)
    with pytest.raises(ValueError):
        FlatRMSprop(FlatParams([p.clone() for p in ours]), tf_like=not tf_like, **kw).load_state_dict(state)


def test_acer_trains_the_same_through_either_path():
    """Three updates of ACER (Pendulum-v1) through ``explicit_update`` (NumPy) and through autograd + torch's
    RMSprop + per-tensor averaging, from the same weights and batches: θ, θ_avg and the logged diagnostics
    agree."""
    cfg = ACERConfig(replay_start=80, c=5, alpha=0.9)
    ours = ACER(cfg, FakeRun("Pendulum-v1", 2000))
    assert ours.explicit
    torch.manual_seed(0)
    with torch.no_grad():
        ours.flat.theta.add_(0.3 * torch.randn_like(ours.flat.theta))
        ours.avg_flat.theta.copy_(ours.flat.theta + 0.1 * torch.randn_like(ours.flat.theta))
    ref = copy.copy(ours)
    ref.net, ref.avg_net = copy.deepcopy(ours.net), copy.deepcopy(ours.avg_net)
    ref.params, ref.avg_params = list(ref.net.parameters()), list(ref.avg_net.parameters())
    ref.explicit = False
    ref.opt = torch.optim.RMSprop(ref.params, cfg.learning_rate, alpha=0.99, eps=cfg.rms_prop_eps)
    for i in range(3):
        batch = ours.collect()[0]
        torch.manual_seed(i)
        d_ours = ours.update(batch)
        torch.manual_seed(i)
        d_ref = ref.update(batch)
        assert d_ours.keys() == d_ref.keys()
        for key, want in d_ref.items():
            np.testing.assert_allclose(d_ours[key], float(want), rtol=5e-5, atol=1e-6, err_msg=key)
    for a, b in itertools.chain(zip(ours.net.parameters(), ref.net.parameters()),
                                zip(ours.avg_net.parameters(), ref.avg_net.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    ours.flat.check()
    ours.avg_flat.check()


def test_old_checkpoints_are_refused_with_a_clear_error():
    """A checkpoint of continuous ACER from before the written-out update holds torch's RMSprop state."""
    from algorithms.base import ConfigError

    algo = ACER(ACERConfig(), FakeRun("Pendulum-v1", 2000))
    state = algo.state_dict()
    state["opt"] = torch.optim.RMSprop(algo.params, 7e-4).state_dict()
    with pytest.raises(ConfigError, match="Delete it"):
        algo.load_state_dict(state)


def test_numpy_actor_records_the_statistics_of_the_observations_it_acted_on():
    """With observation normalisation the batch is re-normalised after the rollout, so μ must be stored
    for the observations as normalised when each action was drawn: those the NumPy actor saw."""
    algo = ACER(ACERConfig(n_envs=2, n_steps=50, norm_obs=True), FakeRun("Pendulum-v1", 2000))
    seen, statistics = [], algo.actor.statistics
    algo.actor.statistics = lambda obs: (seen.append(obs.copy()), statistics(obs))[1]
    for _ in range(2):                         # the second rollout's statistics have moved
        seen.clear()
        batch, _ = algo.collect()
    with torch.no_grad():
        dist = algo.net.dist(torch.from_numpy(np.concatenate(seen)))
    torch.testing.assert_close(batch.stats["mean"].reshape(-1, 1), dist.mean)
    with torch.no_grad():                      # and not for the batch's re-normalised observations
        other = algo.net.dist(batch.obs[:-1].reshape(-1, 3)).mean
    assert not torch.allclose(other, dist.mean, atol=1e-4)


def test_numpy_actor_collects_from_pi_and_records_its_statistics():
    """Continuous ACER on an MLP acts with the NumPy copy of π; the behaviour statistics μ it stores are
    the torch network's own at the states acted on, and the actions are draws from N(μ, σ²)."""
    run = FakeRun("Pendulum-v1", 2000)
    algo = ACER(ACERConfig(n_envs=4, n_steps=200, norm_obs=False), run)
    with torch.no_grad():
        algo.net.log_std.fill_(-0.4)
        algo.flat.theta.add_(0.2 * torch.randn_like(algo.flat.theta))
    batch, _ = algo.collect()                    # without observation normalisation, batch.obs is what π saw
    with torch.no_grad():
        dist = algo.net.dist(batch.obs[:-1].reshape(-1, 3))
    torch.testing.assert_close(batch.stats["mean"].reshape(-1, 1), dist.mean)
    torch.testing.assert_close(batch.stats["log_std"].reshape(-1, 1), dist.log_std)
    z = ((batch.actions.reshape(-1, 1) - dist.mean) / dist.std).flatten()
    assert abs(float(z.mean())) < 0.15 and abs(float(z.std()) - 1) < 0.1    # 800 draws: about ±4 s.e.


@pytest.mark.parametrize("max_norm,bad", [(0.5, None), (1e6, None), (0.5, float("nan")), (0.5, float("inf"))])
def test_numpy_clip_grad_norm_equals_torch(max_norm, bad):
    """The NumPy path's clipping against ``torch.nn.utils.clip_grad_norm_`` on the same gradient, clipped
    and not, and with a non-finite entry: the returned norm and the gradient after."""
    net, avg = _nets()
    flat, _ = _numpy_gradient(net, avg, _batch(), _cfg(truncation=True))
    if bad is not None:
        flat.grad[3] = bad
    ref = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
    for p, g in zip(ref, flat.views(flat.grad)):
        p.grad = g.clone()
    want = torch.nn.utils.clip_grad_norm_(ref, max_norm)
    sdn = NumpySDN(net, avg, flat, FlatParams(list(avg.parameters())))
    norm = sdn.clip_grad_norm(max_norm)
    assert bad is not None or (float(want) > max_norm) == (max_norm == 0.5)   # one case clips, the other not
    np.testing.assert_allclose(norm, float(want), rtol=1e-6)
    torch.testing.assert_close(flat.grad, torch.cat([p.grad.reshape(-1) for p in ref]), rtol=1e-6, atol=1e-9,
                               equal_nan=True)
