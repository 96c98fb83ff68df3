"""Natural-gradient machinery: flat parameters, Fisher-vector products, conjugate gradient.

The Fisher information matrix of the policy (seed §4.5.1–4.5.2),

    F(θ) = E_{s∼ρ, a∼π_θ}[ ∇_θ log π_θ(a|s) ∇_θ log π_θ(a|s)ᵀ ],

is the Hessian at θ = θ_old of the mean KL divergence D̄_KL(π_old ‖ π_θ) over the sampled
states. It is never formed: natural-gradient methods only need products F·v, and solve
F s = g with conjugate gradient (CG), which needs nothing else.

Two ways to get F·v, which the tests show agree:

* ``kl_hessian_fvp``: double back-propagation through the mean KL,
  F v = ∇_θ ( (∇_θ D̄_KL)ᵀ v ).
* ``gauss_newton_fvp``: F = E_s[ J_sᵀ M_s J_s ] with J_s = ∂φ(s)/∂θ the Jacobian of the
  distribution's statistics φ (logits, or mean and log σ) and M_s their closed-form Fisher:
  Categorical M = diag(p) − p pᵀ; diagonal Gaussian M = diag(1/σ²) for the mean and 2 for
  each log σ. J v comes from the double-vjp trick, so no Jacobian is materialised.

Both return the damped product (F + λ I) v, λ the ``damping``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from algorithms.core.distributions import Categorical, DiagGaussian, Distribution

Params = Sequence[torch.Tensor]
Avp = Callable[[torch.Tensor], torch.Tensor]


# --- flat parameter helpers -------------------------------------------------------------

def flat_params(params: Params) -> torch.Tensor:
    """θ as one detached vector (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in params])


@torch.no_grad()
def set_flat_params(params: Params, flat: torch.Tensor) -> None:
    """Write the vector ``flat`` into ``params`` in place (exact copy, no arithmetic)."""
    total = sum(p.numel() for p in params)
    if total != flat.numel():
        raise ValueError(f"flat vector has {flat.numel()} elements, parameters have {total}")
    i = 0
    for p in params:
        n = p.numel()
        p.copy_(flat[i:i + n].view_as(p))
        i += n


def flat_grad(output: torch.Tensor, params: Params, *, create_graph: bool = False,
              retain_graph: bool | None = None) -> torch.Tensor:
    """∇_θ output as one vector; parameters ``output`` does not depend on get zeros."""
    grads = torch.autograd.grad(output, list(params), create_graph=create_graph, retain_graph=retain_graph,
                                allow_unused=True, materialize_grads=True)
    return torch.cat([g.reshape(-1) for g in grads])


# --- Fisher-vector products -------------------------------------------------------------

def kl_hessian_fvp(kl: torch.Tensor, params: Params, damping: float = 0.0) -> Avp:
    """v ↦ (F + λI) v with F = ∇²_θ D̄_KL(π_old ‖ π_θ) at θ_old.

    ``kl`` is the scalar mean KL computed at the current parameters θ = θ_old with the old
    statistics detached, so that its value and gradient are zero and its Hessian is F. The
    gradient graph is built once; every product is one more backward pass through it.
    """
    params = list(params)
    grad_kl = flat_grad(kl, params, create_graph=True)

    def fvp(v: torch.Tensor) -> torch.Tensor:
        hv = flat_grad(grad_kl @ v.detach(), params, retain_graph=True)
        return hv + damping * v

    return fvp


def statistics_fisher_product(dist: Distribution, u: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """M u per state, M the Fisher of the distribution in its statistics φ, in closed form.

    Categorical, φ = logits:            M u = p ⊙ u − p (pᵀ u)
    DiagGaussian, φ = (μ, log σ):       M (u_μ, u_logσ) = (u_μ / σ², 2 u_logσ)
    """
    if isinstance(dist, Categorical):
        (u_z,) = u
        p = dist.probs.detach()
        return (p * u_z - p * (p * u_z).sum(-1, keepdim=True),)
    if isinstance(dist, DiagGaussian):
        u_mu, u_ls = u
        return (u_mu * torch.exp(-2 * dist.log_std.detach()), 2.0 * u_ls)
    raise TypeError(f"no closed-form Fisher for {type(dist).__name__}")


def statistics(dist: Distribution) -> tuple[torch.Tensor, ...]:
    """The statistics φ the distribution is a function of."""
    if isinstance(dist, Categorical):
        return (dist.logits,)
    return (dist.mean, dist.log_std)


def gauss_newton_fvp(dist: Distribution, params: Params, damping: float = 0.0) -> Avp:
    """v ↦ (F + λI) v with F = (1/N) Σ_s J_sᵀ M_s J_s (Gauss–Newton form of the Fisher).

    ``dist`` holds the statistics of N states computed from ``params`` (graph attached).
    """
    params = list(params)
    phi = statistics(dist)
    n_states = phi[0].reshape(-1, phi[0].shape[-1]).shape[0]
    dummies = tuple(torch.zeros_like(t, requires_grad=True) for t in phi)
    # Jᵀ u as a function of the dummy u: differentiating (Jᵀu)ᵀ v with respect to u gives J v.
    jt_u = torch.autograd.grad(phi, params, grad_outputs=dummies, create_graph=True, allow_unused=True,
                               materialize_grads=True)
    jt_u_flat = torch.cat([g.reshape(-1) for g in jt_u])

    def fvp(v: torch.Tensor) -> torch.Tensor:
        jv = torch.autograd.grad(jt_u_flat @ v.detach(), dummies, retain_graph=True)
        mjv = statistics_fisher_product(dist, jv)
        jt_mjv = torch.autograd.grad(phi, params, grad_outputs=mjv, retain_graph=True, allow_unused=True,
                                     materialize_grads=True)
        return torch.cat([g.reshape(-1) for g in jt_mjv]) / n_states + damping * v

    return fvp


# --- conjugate gradient -----------------------------------------------------------------

def cg(Avp: Avp, b: torch.Tensor, max_steps: int, residual_tol: float = 1e-10) -> tuple[torch.Tensor, float]:
    """Solve A x = b for symmetric positive-definite A given only v ↦ A v.

    Starts from x₀ = 0 (deterministic, no RNG) and stops after ``max_steps`` products or
    once the *squared* residual norm rᵀr = ‖b − A x‖² is below ``residual_tol`` (or if
    pᵀAp ≤ 0, i.e. A is not positive definite along p): the rule of Schulman's TRPO code
    (``rdotr < residual_tol``) and of sb3-contrib's ``conjugate_gradient_solver``, so that a
    step equals theirs (tests/test_update_parity.py). Returns x and the final residual norm
    ‖r‖ (the recursively updated residual, equal to ‖b − A x‖ in exact arithmetic).
    """
    x = torch.zeros_like(b)
    r = b.clone()               # r = b − A x₀ = b
    p = r.clone()
    rr = float(r @ r)
    for _ in range(max_steps):
        if rr < residual_tol:     # rᵀr, squared
            break
        Ap = Avp(p)
        pAp = float(p @ Ap)
        if not pAp > 0:
            break
        alpha = rr / pAp
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = float(r @ r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, rr ** 0.5
