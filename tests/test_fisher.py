"""Fisher-vector products and conjugate gradient against independently built matrices.

Oracles: the Fisher matrix E_s E_{a∼π}[∇log π ∇log πᵀ] formed explicitly from
``torch.func.jacrev`` Jacobians of log π, with the expectation over actions exact (a sum over
the actions of a Categorical; Gauss–Hermite quadrature, exact for these polynomials, for a
Gaussian), and ``torch.linalg.solve``.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from algorithms.core.fisher import (
    cg,
    flat_grad,
    flat_params,
    gauss_newton_fvp,
    kl_hessian_fvp,
    set_flat_params,
)
from algorithms.core.nets import ActorCritic

N_STATES = 7


def tiny_policy(action_space: gym.Space, seed: int = 0) -> tuple[ActorCritic, torch.Tensor]:
    """A float64 actor-critic with perturbed weights (so π is far from uniform) and states."""
    torch.manual_seed(seed)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)
    pi = ActorCritic(obs_space, action_space, hidden=(5,)).double()
    with torch.no_grad():
        for p in pi.actor_parameters():
            p.add_(0.5 * torch.randn_like(p))
    return pi, torch.randn(N_STATES, 3, dtype=torch.float64)


def actor_names(pi: ActorCritic) -> list[str]:
    names = {id(p): n for n, p in pi.named_parameters()}
    return [names[id(p)] for p in pi.actor_parameters()]


def logp_jacobian(pi: ActorCritic, obs: torch.Tensor, fn) -> torch.Tensor:
    """∂ fn(π_θ(·|obs)) / ∂θ, flattened over the actor parameters in ``actor_parameters()`` order."""
    names = actor_names(pi)
    params = {n: p.detach() for n, p in pi.named_parameters() if n in names}
    jac = torch.func.jacrev(lambda pd: fn(torch.func.functional_call(pi, pd, (obs,))[0]))(params)
    lead = next(iter(jac.values())).shape[:-len(params[names[0]].shape)]
    return torch.cat([jac[n].reshape(*lead, -1) for n in names], dim=-1)


def explicit_fisher_categorical(pi: ActorCritic, obs: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_s Σ_a π(a|s) ∇log π(a|s) ∇log π(a|s)ᵀ, exact over actions."""
    J = logp_jacobian(pi, obs, lambda d: d.logits)                          # (N, K, P): ∇ log π(a|s)
    with torch.no_grad():
        p = pi.dist(obs).probs
    return torch.einsum("sa,sap,saq->pq", p, J, J) / obs.shape[0]


def explicit_fisher_gaussian(pi: ActorCritic, obs: torch.Tensor, nodes: int = 3) -> torch.Tensor:
    """(1/N) Σ_s E_{a∼N(μ(s), σ²)}[∇log π ∇log πᵀ], the expectation by Gauss–Hermite
    quadrature (exact: the integrand is a polynomial of degree 4 in a)."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    with torch.no_grad():
        d = pi.dist(obs)
    D = d.mean.shape[-1]
    grid = torch.tensor(np.stack(np.meshgrid(*[x] * D, indexing="ij"), -1).reshape(-1, D))     # (M, D)
    weights = torch.tensor(np.prod(np.stack(np.meshgrid(*[w] * D, indexing="ij"), -1).reshape(-1, D), -1))
    weights = weights / weights.sum()
    actions = d.mean[None] + d.std[None] * grid[:, None, :]            # (M, N, D), fixed
    J = logp_jacobian(pi, obs, lambda dist: dist.log_prob(actions))         # (M, N, P)
    return torch.einsum("m,msp,msq->pq", weights, J, J) / obs.shape[0]


def kl_fvp(pi: ActorCritic, obs: torch.Tensor, damping: float):
    old = pi.dist(obs).detach()
    return kl_hessian_fvp(old.kl(pi.dist(obs)).mean(), pi.actor_parameters(), damping)


CASES = {
    "categorical": (gym.spaces.Discrete(3), explicit_fisher_categorical),
    "gaussian": (gym.spaces.Box(-1.0, 1.0, (2,), np.float32), explicit_fisher_gaussian),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("damping", [0.0, 0.1])
def test_fvp_equals_explicit_fisher_times_v(case, damping):
    space, explicit = CASES[case]
    pi, obs = tiny_policy(space)
    F = explicit(pi, obs)
    n = F.shape[0]
    assert n == sum(p.numel() for p in pi.actor_parameters())
    assert F.abs().max() > 1e-3                                     # not a trivial zero matrix
    fvp = kl_fvp(pi, obs, damping)
    gn = gauss_newton_fvp(pi.dist(obs), pi.actor_parameters(), damping)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = torch.randn(n, generator=gen, dtype=torch.float64)
        expected = F @ v + damping * v
        torch.testing.assert_close(fvp(v), expected, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(gn(v), expected, rtol=1e-9, atol=1e-10)


def test_gaussian_fisher_covers_log_std():
    """The log σ parameters are optimised variables with their Fisher block 2·I (per state)."""
    pi, obs = tiny_policy(gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
    params = pi.actor_parameters()
    k = next(k for k, p in enumerate(params) if p is pi.pi.log_std)
    i = sum(p.numel() for p in params[:k])                         # offset of log σ in flat θ
    F = explicit_fisher_gaussian(pi, obs)
    torch.testing.assert_close(F[i:i + 2, i:i + 2], 2.0 * torch.eye(2, dtype=torch.float64))


def test_cg_matches_linear_solve():
    pi, obs = tiny_policy(gym.spaces.Discrete(3))
    damping = 0.1
    F = explicit_fisher_categorical(pi, obs)
    A = F + damping * torch.eye(F.shape[0], dtype=torch.float64)
    g = torch.randn(F.shape[0], generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = torch.linalg.solve(A, g)
    x, residual = cg(lambda v: A @ v, g, max_steps=200, residual_tol=1e-24)   # ‖r‖² < 1e-24
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-5)
    assert residual < 1e-12
    x_fvp, _ = cg(kl_fvp(pi, obs, damping), g, max_steps=200, residual_tol=1e-24)
    torch.testing.assert_close(x_fvp, expected, rtol=0, atol=1e-5)
    assert torch.linalg.norm(g - A @ x_fvp) < 1e-8


def test_cg_starts_at_zero_and_uses_no_rng():
    A = torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64))
    b = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    state = torch.random.get_rng_state()
    x0, r0 = cg(lambda v: A @ v, b, max_steps=0)
    assert torch.equal(x0, torch.zeros(3, dtype=torch.float64)) and r0 == pytest.approx(3 ** 0.5)
    x1, _ = cg(lambda v: A @ v, b, max_steps=1)
    x1_again, _ = cg(lambda v: A @ v, b, max_steps=1)
    assert torch.equal(x1, x1_again)
    torch.testing.assert_close(x1, (3 / 7) * b)                   # first CG step: (bᵀb / bᵀAb) b
    x, r = cg(lambda v: A @ v, b, max_steps=3, residual_tol=0.0)   # exact in n = 3 steps
    torch.testing.assert_close(x, torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_cg_stops_at_the_first_squared_residual_below_tol():
    """rᵀr < residual_tol, as Schulman's code and sb3-contrib: the products CG makes are counted.
    On A = diag(1, 2, 4), b = 1 the residual after one step is r₁ = b − (3/7) A b."""
    A = torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64))
    b = torch.ones(3, dtype=torch.float64)
    rr1 = float(((b - (3 / 7) * A @ b) ** 2).sum())
    calls = []

    def Avp(v):
        calls.append(1)
        return A @ v

    assert rr1 < rr1 ** 0.5          # so a tolerance between them tells rᵀr from ‖r‖
    for tol, products in ((3.001, 0), (rr1 * 1.001, 1), (rr1 * 0.999, 2)):   # rᵀr = 3 at x₀ = 0
        calls.clear()
        cg(Avp, b, max_steps=3, residual_tol=tol)
        assert len(calls) == products, (tol, len(calls))


def test_flat_helpers_roundtrip_bitwise():
    pi, obs = tiny_policy(gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
    params = pi.actor_parameters()
    before = [p.detach().clone() for p in params]
    flat = flat_params(params)
    set_flat_params(params, flat + 1.0)
    set_flat_params(params, flat)
    assert all(torch.equal(p, q) for p, q in zip(params, before))
    with pytest.raises(ValueError):
        set_flat_params(params, flat[:-1])
    # flat_grad: gradient of Σθ² is 2θ, and parameters out of the graph get zeros.
    out = sum((p ** 2).sum() for p in params[:-1])
    g = flat_grad(out, params)
    torch.testing.assert_close(g[:-2], 2 * flat[:-2])
    assert torch.equal(g[-2:], torch.zeros(2, dtype=torch.float64))
