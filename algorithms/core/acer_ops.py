"""The pure pieces of ACER (Wang et al. 2017; seed §4.5.5) shared by its discrete
(``algorithms.acer``) and continuous (``algorithms.acer_continuous``) forms: the Retrace
target Q^ret, the efficient trust-region projection z*, the averaged network θ_avg, and
V(s_{t+1}) with time-limit bootstraps. Tensors in, tensors out; no configuration object, so
the dependency runs one way: acer.py → acer_continuous.py → core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn


class TermsConfig(Protocol):
    """The settings one ACER update reads (``ACERConfig`` provides them)."""

    gamma: float
    ent_coef: float
    c: float
    delta: float
    lambda_retrace: float
    sdn_samples: int
    truncation: bool
    trust_region: bool
    retrace: bool


@torch.no_grad()
def retrace(
    rewards: torch.Tensor,
    q_taken: torch.Tensor,
    next_values: torch.Tensor,
    c: torch.Tensor,
    terminated: torch.Tensor,
    episode_end: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """Q^ret over (T, N), defined backwards by

        Q^ret_t = r_t + γ (1 − d_t) [ V(s_{t+1}) + (1 − e_t) c_{t+1} (Q^ret_{t+1} − Q(s_{t+1}, a_{t+1})) ]

    ``q_taken[t]`` = Q(s_t, a_t); ``next_values[t]`` = V(s_{t+1}), the final observation's on an
    episode end and V(s_T) at the last step; ``c[t]`` = c_t; d = terminated (no bootstrap),
    e = episode end for any reason (cuts the trace). c ≡ 1 gives Q_opc; c ≡ 0 the one-step target.

    The recursion is linear, Q^ret_t = u_t + w_t Q^ret_{t+1} with w_t = γ (1 − d_t)(1 − e_t) c_{t+1}
    (0 at t = T − 1) and u_t = r_t + γ (1 − d_t) V(s_{t+1}) − w_t Q(s_{t+1}, a_{t+1}), so it is
    solved for all t at once: Q^ret_t = Σ_{t'≥t} (Π_{s=t}^{t'−1} w_s) u_{t'}, the products read
    off one cumulative product over a (T, T, N) upper-triangular table.
    """
    T = rewards.shape[0]
    w = torch.zeros_like(rewards)
    w[:-1] = gamma * (1.0 - terminated[:-1]) * (1.0 - episode_end[:-1]) * c[1:]
    u = rewards + gamma * (1.0 - terminated) * next_values
    u[:-1] -= w[:-1] * q_taken[1:]
    upper = torch.ones(T, T, dtype=torch.bool, device=rewards.device).triu()  # s ≥ t
    prods = torch.where(upper.unsqueeze(-1), w.unsqueeze(0), torch.ones_like(w).unsqueeze(0)).cumprod(1)
    # coefficient of u_{t'} in Q^ret_t: Π_{s=t}^{t'−1} w_s = prods[t, t' − 1] (1 for t' = t), 0 for t' < t
    coef = torch.cat([torch.ones_like(prods[:, :1]), prods[:, :-1]], 1) * upper.unsqueeze(-1)
    return (coef * u.unsqueeze(0)).sum(1)


def trust_region(g: torch.Tensor, k: torch.Tensor, delta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """KKT solution of min_z ½‖g − z‖² s.t. kᵀz ≤ δ, per row (last axis = statistics φ):
    z* = g − max(0, (kᵀg − δ)/‖k‖²) k. Returns (z*, the coefficient)."""
    coef = ((k * g).sum(-1) - delta).clamp(min=0) / (k * k).sum(-1).clamp(min=1e-12)
    return g - coef.unsqueeze(-1) * k, coef


def softmax_tangent(phi: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """For discrete φ = softmax(l): v ↦ Jᵀv = φ ⊙ (v − φᵀv), what a φ-space gradient v becomes on
    the logits l. The direction 1 (k = −π_avg/φ at π = π_avg) maps to 0: the simplex ignores it."""
    phi = phi.detach()
    return lambda v: phi * (v - (phi * v).sum(-1, keepdim=True))


def tr_diagnostics(
    g: torch.Tensor, k: torch.Tensor, delta: float, enabled: bool = True,
    tangent: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """z* = ``trust_region(g, k, δ)`` (or g itself when ``enabled`` is False: the no-trust-region
    ablation) and the diagnostics of the projection, computed either way: ‖k‖ (k_norm), the
    fraction of steps with kᵀg > δ (tr_active_frac), the mean of max(0, (kᵀg − δ)/‖k‖²) (tr_shrink)
    and tr_effect = ‖T(g − z*)‖ / ‖T(g)‖ over the batch (Frobenius norms), with T = ``tangent`` the
    map from φ-space to the network's outputs (identity when None): how much the projection
    actually changes the policy gradient, relative to it (above 1 when it overshoots). kᵀg > δ
    alone can overstate the trust region: with the discrete φ = π(·|s), k = −π_avg/φ ≈ −1 near
    π_avg = π, a shift the softmax ignores."""
    z, coef = trust_region(g, k, delta)
    t = tangent or (lambda v: v)
    effect = t(g - z).norm() / t(g).norm().clamp(min=1e-12)
    if not enabled:
        z = g
    return z, {
        "k_norm": k.norm(dim=-1).mean(),
        "tr_active_frac": (coef > 0).float().mean(),
        "tr_shrink": coef.mean(),
        "tr_effect": effect.detach(),
    }


@torch.no_grad()
def average_(avg: nn.Module | list[torch.Tensor], net: nn.Module | list[torch.Tensor], alpha: float) -> None:
    """θ_avg ← α θ_avg + (1 − α) θ, in place (the tensors themselves, not a rebound name).
    Modules or their (cached) parameter lists."""
    avg_p = avg.parameters() if isinstance(avg, nn.Module) else avg
    net_p = net.parameters() if isinstance(net, nn.Module) else net
    for pa, p in zip(avg_p, net_p, strict=True):
        pa.lerp_(p, 1.0 - alpha)


def next_values(
    v: torch.Tensor, v_final: torch.Tensor, final_t: torch.Tensor, final_b: torch.Tensor
) -> torch.Tensor:
    """V(s_{t+1}) for t < T, (T, B), from V(s_0..s_T) (T + 1, B): V(s_{t+1}) = v[t + 1], except at the
    time-limit truncations (step ``final_t[j]`` of trajectory ``final_b[j]``), where it is the value
    ``v_final[j]`` of the observation that ended the episode."""
    nv = v[1:].clone()
    nv[final_t, final_b] = v_final
    return nv
