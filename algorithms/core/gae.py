"""Generalised advantage estimation (Schulman et al. 2016).

    δ_t = r_t + γ (1 − d_t) V(s_{t+1}) − V(s_t)
    A_t = δ_t + γ λ (1 − d_t) (1 − e_t) A_{t+1}

``d_t`` (terminated) zeroes the bootstrap only on a true termination. ``e_t`` marks the end
of an episode for any reason (terminated or truncated by a time limit): it cuts the
recursion, while a truncated step still bootstraps from V(s_{t+1}) of the *final*
observation, which the caller passes in ``next_values``.
"""
from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    episode_end: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All inputs are ``(T, N)``. ``next_values[t]`` is V(s_{t+1}) where s_{t+1} is the
    observation the env returned after step t (the final observation on an episode end).
    Returns (advantages, returns = advantages + values)."""
    not_term = 1.0 - terminated.to(rewards.dtype)
    not_end = 1.0 - episode_end.to(rewards.dtype)
    delta = (rewards + gamma * not_term * next_values - values).cpu().numpy()
    decay = (gamma * lam * not_end).cpu().numpy()
    # the backward recursion in NumPy (~10x less per-step overhead than torch); with one env its rows
    # are NumPy scalars of delta's dtype: the same roundings as 1-element arrays at a seventh of their
    # per-step cost (tests/test_core.py checks the bits)
    one = delta.shape[1] == 1
    last, out = delta.dtype.type(0), []
    for d, c in zip((delta[:, 0] if one else delta)[::-1], (decay[:, 0] if one else decay)[::-1]):
        last = d + c * last
        out.append(last)
    adv = np.array(out[::-1], dtype=delta.dtype).reshape(delta.shape)
    A = torch.from_numpy(adv).to(values.device)
    return A, A + values
