"""NPG and TRPO: configuration, the trust region, the line search, the step size."""
from __future__ import annotations

import copy
import csv
import dataclasses
import math

import gymnasium as gym
import pytest
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from torch.distributions import Categorical, Independent, Normal, kl_divergence

from algorithms import registry
from algorithms.base import ConfigError, build_config
from algorithms.core.envs import VecEnv
from algorithms.core.fisher import flat_grad, flat_params, kl_hessian_fvp, set_flat_params
from algorithms.trpo import NPG, TRPO, NPGConfig, TRPOConfig
from experiments.envs import load_catalog
from experiments.runner import execute, resolve_hyperparams

DIAGNOSTICS = ("kl", "max_kl", "surrogate_before", "surrogate_after", "line_search_steps", "step_accepted",
               "cg_residual", "step_norm", "step_size", "entropy", "value_loss", "explained_variance",
               "approx_kl")


class StubRun:
    """The runner's side of ``algorithms.base.Run``, without evaluation or output files."""

    def __init__(self, env_id: str, total_steps: int = 0, seed: int = 0) -> None:
        self.env_id, self.total_steps, self.seed, self.device = env_id, total_steps, seed, torch.device("cpu")
        self.updates: list[tuple[int, dict]] = []

    def make_env(self, n_envs, *, gamma=0.99, norm_obs=False, norm_reward=False) -> VecEnv:
        return VecEnv([lambda: gym.make(self.env_id)] * n_envs, seed=self.seed, norm_obs=norm_obs,
                      norm_reward=norm_reward, gamma=gamma)

    def log_update(self, step, diagnostics) -> None:
        self.updates.append((step, dict(diagnostics)))


def make(cls, env_id: str = "CartPole-v1", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cfg = build_config(cls.Config, {"n_steps": 256, "batch_size": 64, **overrides})
    return cls(cfg, StubRun(env_id, total_steps=256, seed=seed))


def batch(algo):
    """One rollout, flattened: observations, actions, normalised advantages."""
    buf = algo.buffer
    buf.collect(algo.policy)
    A, _ = buf.advantages(algo.cfg.gamma, algo.cfg.gae_lambda)
    obs, act, A = buf.flat(buf.obs, buf.actions, A)
    return obs, act, (A - A.mean()) / (A.std() + 1e-8)


def snapshot(params):
    return [p.detach().clone() for p in params]


def test_defaults_are_sb3_contrib_trpo():
    cfg = TRPOConfig()
    expected = dict(n_steps=2048, batch_size=128, gamma=0.99, gae_lambda=0.95, learning_rate=1e-3,
                    n_critic_updates=10, cg_max_steps=15, cg_damping=0.1, line_search_shrinking_factor=0.8,
                    line_search_max_iter=10, target_kl=0.01, normalize_advantage=True, sub_sampling_factor=1)
    assert {k: getattr(cfg, k) for k in expected} == expected
    assert not hasattr(NPGConfig(), "line_search_max_iter")      # NPG has no line search
    with pytest.raises(ConfigError):
        build_config(TRPOConfig, {"line_search_shrinking_factor": 1.0})
    with pytest.raises(ConfigError):
        build_config(NPGConfig, {"target_kl": 0})


def test_critic_adam_eps_is_sb3s():
    """The critic's Adam ε is the one SB3's ActorCriticPolicy (sb3-contrib TRPO's policy) uses."""
    spaces = (gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2))
    sb3_eps = ActorCriticPolicy(*spaces, lr_schedule=lambda _: 1e-3).optimizer.defaults["eps"]
    for cls in (NPG, TRPO):
        assert make(cls).critic_opt.eps == sb3_eps == 1e-5


def test_registry_and_zoo_hyperparams():
    assert registry.get("npg")[0] is NPG and registry.get("trpo")[0] is TRPO
    assert issubclass(TRPO, NPG) and TRPO.take_step is not NPG.take_step
    spec = load_catalog().get("CartPole-v1")
    for algo in ("npg", "trpo"):
        _, cfg = resolve_hyperparams(algo, spec, {})
        got = (cfg.n_envs, cfg.n_steps, cfg.batch_size, cfg.cg_damping, cfg.gae_lambda, cfg.n_critic_updates)
        assert got == (2, 512, 512, 1e-3, 0.98, 20)


def read_progress(path) -> list[dict[str, float]]:
    with open(path / "progress.csv") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


@pytest.mark.parametrize("algo", ["trpo", "npg"])
def test_short_run_respects_trust_region(tmp_path, algo):
    delta = 0.01
    s = execute(algo, "CartPole-v1", 0, 2048, tmp_path, {"n_envs": 1, "n_steps": 256, "batch_size": 64,
                                                         "n_critic_updates": 2}, progress_bar=False)
    assert s["status"] == "ok" and s["steps_done"] == 2048
    rows = read_progress(tmp_path)
    assert len(rows) == 8 and all(k in rows[0] for k in DIAGNOSTICS)
    for r in rows:
        assert r["max_kl"] == delta
        if algo == "trpo":
            assert r["kl"] <= delta * (1 + 1e-6)            # the constraint holds after every update
            if r["step_accepted"]:
                assert r["surrogate_after"] > r["surrogate_before"]
            else:
                assert r["kl"] == 0.0                       # θ_old restored: π is π_old again
                assert r["surrogate_after"] == pytest.approx(r["surrogate_before"], abs=1e-6)
        else:   # NPG takes every step; only its quadratic KL model is δ (the exact KL is not bounded)
            assert r["step_accepted"] == 1 and r["line_search_steps"] == 0 and r["kl"] > 0


@pytest.mark.parametrize("force", ["surrogate_never_improves", "tiny_delta"])
def test_failed_line_search_restores_theta_old_bitwise(force):
    algo = make(TRPO)
    problem, _ = algo.step_problem(*batch(algo))
    before = snapshot(problem.params)
    trials: list[torch.Tensor] = []
    real_evaluate = problem.evaluate

    def evaluate():
        trials.append(flat_params(problem.params))
        surrogate, kl, dist = real_evaluate()
        return (surrogate - 1.0 if force == "surrogate_never_improves" else surrogate), kl, dist

    problem = dataclasses.replace(problem, evaluate=evaluate,
                                  max_kl=1e-30 if force == "tiny_delta" else problem.max_kl)
    out = algo.take_step(problem)
    assert out == {"line_search_steps": algo.cfg.line_search_max_iter, "step_accepted": 0}
    assert len(trials) == algo.cfg.line_search_max_iter
    assert all(not torch.equal(t, problem.theta_old) for t in trials)     # the trials did move θ
    assert all(torch.equal(p, q) for p, q in zip(problem.params, before))
    assert problem.accepted is None      # what learn() then logs is evaluated afresh at θ_old


def test_line_search_accepts_first_admissible_point():
    algo = make(TRPO)
    obs, act, adv = batch(algo)
    problem, _ = algo.step_problem(obs, act, adv)
    out = algo.take_step(problem)
    assert out["step_accepted"] == 1 and 1 <= out["line_search_steps"] <= algo.cfg.line_search_max_iter
    surrogate, kl, dist = problem.evaluate()
    assert kl <= problem.max_kl and surrogate > problem.surrogate_before
    # what take_step hands learn() to log is that evaluation at the accepted θ, bit for bit
    L, D, kept = problem.accepted
    assert (L, D) == (surrogate, kl) and torch.equal(kept.log_prob(act), dist.log_prob(act))
    fraction = algo.cfg.line_search_shrinking_factor ** (out["line_search_steps"] - 1)
    assert torch.equal(flat_params(problem.params), problem.theta_old + fraction * problem.full_step)


def npg_kl_ratios(deltas, monkeypatch, **overrides) -> list[float]:
    """KL(π_old ‖ π_{θ_old + Δθ}) / δ of the NPG step, in float64, for each δ; CG run to
    convergence (rᵀr < 1e-30 rather than the reference codes' 1e-10)."""
    import algorithms.trpo as trpo_module
    from algorithms.core.fisher import cg
    monkeypatch.setattr(trpo_module, "cg", lambda A, b, n: cg(A, b, n, residual_tol=1e-30))
    torch.set_default_dtype(torch.float64)   # the policy, and θ's flat vector, built in float64
    try:
        algo = make(NPG, cg_max_steps=200, **overrides)
    finally:
        torch.set_default_dtype(torch.float32)
    obs, act, adv = batch(algo)
    obs, adv = obs.double(), adv.double()
    ratios = []
    for delta in deltas:
        algo.cfg.target_kl = delta
        problem, diag = algo.step_problem(obs, act, adv)
        assert diag["cg_residual"] < 1e-8
        algo.take_step(problem)
        ratios.append(problem.evaluate()[1] / delta)
        set_flat_params(problem.params, problem.theta_old)
    return ratios


def test_npg_step_kl_matches_delta_to_second_order(monkeypatch):
    """A linear softmax policy, no damping, CG run to convergence: ½ΔθᵀFΔθ = δ exactly, so
    the exact KL of the step is δ up to third-order terms: KL/δ → 1 as δ → 0."""
    errors = [abs(r - 1) for r in npg_kl_ratios((1e-2, 1e-3, 1e-4), monkeypatch, net_arch=(), cg_damping=0.0)]
    assert all(b < a / 5 for a, b in zip(errors, errors[1:]))
    assert errors[0] < 0.05 and errors[-1] < 1e-4


def test_damped_npg_step_stays_inside_the_quadratic_model(monkeypatch):
    """With damping λ, sᵀ(F + λI)s ≥ sᵀFs, so the step's KL is at most δ as δ → 0."""
    ratios = npg_kl_ratios((1e-4, 1e-5), monkeypatch, net_arch=(8,), cg_damping=1e-3)
    assert all(0.1 < r < 1 for r in ratios)


def test_log_std_is_optimised():
    algo = make(TRPO, "Pendulum-v1")
    problem, _ = algo.step_problem(*batch(algo))
    log_std = algo.policy.pi.log_std
    assert any(p is log_std for p in problem.params)
    before = log_std.detach().clone()
    algo.take_step(dataclasses.replace(problem, evaluate=lambda: (math.inf, 0.0, None)))   # accept the full step
    assert not torch.equal(log_std.detach(), before)


def test_learn_logs_every_update_and_state_dict_roundtrip():
    algo = make(TRPO, n_critic_updates=1)
    algo.run.total_steps = 512
    algo.learn()
    assert [s for s, _ in algo.run.updates] == [256, 512]
    assert all(set(DIAGNOSTICS) <= set(d) for _, d in algo.run.updates)
    state = algo.state_dict()
    other = make(TRPO, n_critic_updates=1)
    other.load_state_dict(state)
    assert other.step == 512
    mine, theirs = algo.policy.state_dict(), other.policy.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert other.critic_opt.t == algo.critic_opt.t > 0
    assert torch.equal(other.critic_opt.m, algo.critic_opt.m) and torch.equal(other.critic_opt.v, algo.critic_opt.v)


@pytest.mark.slow
def test_trpo_solves_cartpole_within_100k_steps(tmp_path):
    s = execute("trpo", "CartPole-v1", 0, 100_000, tmp_path, progress_bar=False)
    assert s["status"] == "ok"
    with open(tmp_path / "eval.csv") as f:
        best = max(float(r["return_mean"]) for r in csv.DictReader(f))
    assert best >= 475


# --- the KL that TRPO enforces and logs, against torch.distributions ---------------------

def torch_policy(policy, state: dict, obs: torch.Tensor):
    """π(·|s) of the policy with parameters ``state``, as a torch.distributions object (float64)."""
    net = copy.deepcopy(policy).double()
    net.load_state_dict(state)
    with torch.no_grad():
        phi = net.pi.linear(net.pi_trunk(obs.double()))
        if net.pi.discrete:
            return Categorical(logits=phi)
        return Independent(Normal(phi, net.pi.log_std.exp().expand_as(phi)), 1)


def true_kl(policy, before: dict, after: dict, obs: torch.Tensor) -> float:
    """(1/N) Σ_t KL(π_before(·|s_t) ‖ π_after(·|s_t)), recomputed from saved parameters."""
    return float(kl_divergence(torch_policy(policy, before, obs), torch_policy(policy, after, obs)).mean())


def state(policy) -> dict:
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}


def test_evaluate_kl_sees_a_step_in_log_std_only():
    """Δθ moves only log σ by 0.5: μ is unchanged, so per state and action dimension
    KL(N(μ, σ₀²) ‖ N(μ, σ₁²)) = log(σ₁/σ₀) + σ₀²/(2σ₁²) − ½, summed over the D dimensions."""
    algo = make(TRPO, "Pendulum-v1")
    problem, _ = algo.step_problem(*batch(algo))
    log_std = algo.policy.pi.log_std
    offset = 0
    for p in problem.params:
        if p is log_std:
            break
        offset += p.numel()
    step = torch.zeros_like(problem.theta_old)
    step[offset:offset + log_std.numel()] = 0.5
    l0 = log_std.detach().clone().double()
    set_flat_params(problem.params, problem.theta_old + step)
    l1 = log_std.detach().double()
    closed_form = float((l1 - l0 + torch.exp(2 * l0) / (2 * torch.exp(2 * l1)) - 0.5).sum())
    assert closed_form > 0.1
    assert problem.evaluate()[1] == pytest.approx(closed_form, rel=1e-5)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_logged_kl_is_the_true_kl_of_the_accepted_update(env_id):
    """``kl`` in the progress row of an accepted update = D̄_KL(π_θold ‖ π_θ) on the update's
    batch, recomputed with torch.distributions from parameters saved before and after."""
    algo = make(TRPO, env_id, n_critic_updates=1)
    algo.run.total_steps = 3 * 256
    saved: list[dict] = []
    step_problem, take_step = algo.step_problem, algo.take_step

    def recording_step_problem(obs, act, adv):
        saved.append({"obs": obs.clone(), "before": state(algo.policy)})
        return step_problem(obs, act, adv)

    def recording_take_step(problem):
        out = take_step(problem)
        saved[-1].update(after=state(algo.policy), accepted=out["step_accepted"])
        return out

    algo.step_problem, algo.take_step = recording_step_problem, recording_take_step
    algo.learn()
    assert len(saved) == len(algo.run.updates) == 3
    accepted = 0
    for rec, (_, diag) in zip(saved, algo.run.updates):
        expected = true_kl(algo.policy, rec["before"], rec["after"], rec["obs"])
        if rec["accepted"]:
            accepted += 1
            assert 0 < expected <= diag["max_kl"] * (1 + 1e-5)
        assert diag["kl"] == pytest.approx(expected, rel=1e-4, abs=1e-9)
    assert accepted >= 2


def test_every_accepted_trpo_step_has_true_kl_within_delta():
    """Property over random seeds, radii δ and steps: the natural step plus a random move of
    log σ (its sign that of ∂L/∂log σ, so that small steps improve L and the line search can
    accept). Every accepted θ has D̄_KL(π_θold ‖ π_θ) ≤ δ, recomputed independently; a
    rejected one restores θ_old."""
    accepted = 0
    for seed in range(5):
        algo = make(TRPO, "Pendulum-v1", seed=seed)
        obs, act, adv = batch(algo)
        g = torch.Generator().manual_seed(100 + seed)
        delta = float(10 ** torch.empty(1).uniform_(-2.5, -1, generator=g))
        algo.cfg.target_kl = delta
        problem, _ = algo.step_problem(obs, act, adv)
        log_std = algo.policy.pi.log_std
        logp = algo.policy.dist(obs).log_prob(act)
        grad_log_std = torch.autograd.grad(((logp - logp.detach()).exp() * adv).mean(), log_std)[0]  # ∂L/∂log σ
        size = (delta * float(torch.empty(1).uniform_(1, 20, generator=g))) ** 0.5  # KL of the σ move ≈ size²
        offset = sum(p.numel() for p in problem.params[:[id(p) for p in problem.params].index(id(log_std))])
        step = problem.full_step.clone()
        step[offset:offset + log_std.numel()] += size * torch.sign(grad_log_std)
        before = state(algo.policy)
        out = algo.take_step(dataclasses.replace(problem, full_step=step))
        kl = true_kl(algo.policy, before, state(algo.policy), obs)
        if out["step_accepted"]:
            accepted += 1
            assert kl <= delta * (1 + 1e-5), f"seed {seed}: true KL {kl:.3g} > δ = {delta:.3g}"
        else:
            assert kl == 0.0
    assert accepted >= 3


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_critic_fit_explicit_equals_autograd(env_id):
    """The critic's explicit backward (core/explicit.py) against autograd: the same minibatch order
    (one torch seed), 3 epochs of Adam, the same φ and loss up to float rounding; θ untouched."""
    fits = []
    for explicit in (True, False):
        algo = make(NPG, env_id, n_critic_updates=3)
        if not explicit:
            algo.critic_net = None
        obs, _, _ = batch(algo)
        returns = torch.linspace(-1, 3, obs.shape[0])
        actor, phi0 = flat_params(algo.policy.actor_parameters()), algo.critic_flat.theta.clone()
        torch.manual_seed(1)
        loss = algo.fit_critic(obs, returns)
        assert torch.equal(flat_params(algo.policy.actor_parameters()), actor)
        assert (algo.critic_flat.theta - phi0).abs().max() > 1e-3      # the critic did move
        fits.append((loss, algo.critic_flat.theta.clone()))
    assert fits[0][0] == pytest.approx(fits[1][0], rel=1e-5)
    torch.testing.assert_close(fits[0][1], fits[1][1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_explicit_gradient_and_fisher_equal_autograd(env_id, activation):
    """g and (F + λI)v of the MLP path (Gauss-Newton form, written out) against autograd's
    ∇L and the Hessian-vector product of the mean KL (kl_hessian_fvp) at θ_old."""
    algo = make(NPG, env_id, activation=activation, cg_damping=0.1)
    pi = algo.policy
    with torch.no_grad():     # off the orthogonal init, so that every layer's term matters
        for p in pi.actor_parameters():
            p.add_(0.3 * torch.randn_like(p))
    obs, act, adv = batch(algo)
    with torch.no_grad():
        old = pi.dist(obs)
        logp_old = old.log_prob(act)
    old_explicit, surr, g, Fv = algo.explicit_gradient_and_fisher(obs, act, adv)
    # π_old from the explicit forward: the module's forward, bit for bit (the update's ρ_t are exactly 1)
    assert torch.equal(old_explicit.log_prob(act), logp_old)
    dist = pi.dist(obs)
    surr_ref = (torch.exp(dist.log_prob(act) - logp_old) * adv).mean()
    params = pi.actor_parameters()
    g_ref = flat_grad(surr_ref, params, retain_graph=True)
    Fv_ref = kl_hessian_fvp(old.kl(dist).mean(), params, 0.1)
    torch.testing.assert_close(surr, surr_ref.detach())
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)
    for k in range(3):
        v = torch.randn(g.shape, generator=torch.Generator().manual_seed(k))
        torch.testing.assert_close(Fv(v), Fv_ref(v), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("B", [1, 7, 64, 100, 128, 2048, 32768, 32769])
@pytest.mark.parametrize("threads", [1, 2])
def test_minibatch_mse_in_one_call_has_each_minibatchs_bits(B, threads):
    """The critic's logged loss reduces its minibatches' errors after the loop: every minibatch's
    mean squared error must be that of reducing it alone, bit for bit (and with a shorter last one),
    also where torch would split a large single reduction across threads (B > 32 768)."""
    from algorithms.trpo import minibatch_mse
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(B)
        errs = [3 * torch.randn(B, 1, generator=g) for _ in range(40)]
        assert torch.equal(minibatch_mse(errs), torch.stack([e.square().mean() for e in errs]))
        ragged = errs + [torch.randn(max(B // 3, 2), 1, generator=g)]
        assert torch.equal(minibatch_mse(ragged), torch.stack([e.square().mean() for e in ragged]))
    finally:
        torch.set_num_threads(before)
