"""K-FAC: a Kronecker-factored Fisher per linear layer (Martens & Grosse 2015; ACKTR, Wu et al. 2017).

For a linear layer s = W ā (ā = [a; 1], the layer's input with the bias folded in), the Fisher
block of vec(W) is E[(ā āᵀ) ⊗ (g gᵀ)] with g = ∂ log π(a|s_in)/∂s the back-propagated signal at
the layer's output, actions a drawn from π itself (the *true* Fisher, not the empirical one).
K-FAC assumes the two factors independent,

    F_W ≈ A ⊗ G,   A = E[ā āᵀ],   G = E[g gᵀ],

and treats the layers as independent (block-diagonal F). Then (A ⊗ G)⁻¹ vec(∇_W) = vec(G⁻¹ ∇_W A⁻¹),
two small inverses per layer instead of one inverse of F. Damping λ enters factored,
(G + √λ I)⁻¹ ∇_W (A + √λ I)⁻¹ (Martens & Grosse §6.3 without the π-correction).

``KFACFisher.record`` records ā and g with forward / backward hooks on every ``nn.Linear`` of a
module, installed only while the caller's Σ log π(a|s) for sampled actions is computed and
back-propagated; the factors are running averages (``decay``; 0 keeps only the last batch).
``natural_gradient`` turns given (weight, bias) gradients into the damped natural-gradient step.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn


class KFACFisher:
    """Kronecker factors (A, G) of every ``nn.Linear`` in ``module``; see the module docstring."""

    def __init__(self, module: nn.Module, damping: float = 1e-3, decay: float = 0.0) -> None:
        self.layers = [m for m in module.modules() if isinstance(m, nn.Linear)]
        self.damping, self.decay = damping, decay
        self.A: dict[nn.Linear, torch.Tensor] = {}
        self.G: dict[nn.Linear, torch.Tensor] = {}
        self._a: dict[nn.Linear, torch.Tensor] = {}

    def _save_input(self, m: nn.Linear, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        a = inp[0].detach().reshape(-1, m.in_features)
        self._a[m] = torch.cat([a, torch.ones_like(a[:, :1])], 1) if m.bias is not None else a

    def _save_grad(self, m: nn.Linear, grad_in: tuple, grad_out: tuple[torch.Tensor, ...]) -> None:
        g = grad_out[0].detach().reshape(-1, m.out_features)
        a = self._a[m]
        n = a.shape[0]
        # the caller back-propagates the SUM of log π over n samples: g is the per-sample signal
        self._update(self.A, m, a.T @ a / n)
        self._update(self.G, m, g.T @ g / n)

    def _update(self, store: dict, m: nn.Linear, new: torch.Tensor) -> None:
        store[m] = new if m not in store or self.decay == 0 else self.decay * store[m] + (1 - self.decay) * new

    def record(self, log_prob_sum: Callable[[], torch.Tensor]) -> None:
        """Run ``log_prob_sum()`` — the forward pass giving Σ_i log π(a_i|s_i), a_i ~ π(·|s_i) (one
        sample per state, or several) — and back-propagate it, updating the factors from what the
        hooks see. Leaves the parameters' ``.grad`` as they were."""
        params = [p for m in self.layers for p in m.parameters()]
        saved = [p.grad for p in params]
        hooks = [h for m in self.layers for h in (m.register_forward_hook(self._save_input),
                                                  m.register_full_backward_hook(self._save_grad))]
        try:
            with warnings.catch_warnings():   # the first layer's input (observations) needs no gradient
                warnings.filterwarnings("ignore", "Full backward hook is firing", UserWarning)
                torch.autograd.backward(log_prob_sum(), inputs=params)
        finally:
            for h in hooks:
                h.remove()
            for p, g in zip(params, saved):
                p.grad = g

    def natural_gradient(self, grads: dict[nn.Linear, tuple[torch.Tensor, torch.Tensor | None]]
                         ) -> dict[nn.Linear, tuple[torch.Tensor, torch.Tensor | None]]:
        """(G + √λ I)⁻¹ [∇W, ∇b] (A + √λ I)⁻¹ per layer, for the given (weight, bias) gradients."""
        out = {}
        d = self.damping ** 0.5
        for m in self.layers:
            gw, gb = grads[m]
            grad = torch.cat([gw, gb[:, None]], 1) if gb is not None else gw
            A, G = self.A[m], self.G[m]
            eye_a = torch.eye(len(A), dtype=A.dtype, device=A.device)
            eye_g = torch.eye(len(G), dtype=G.dtype, device=G.device)
            step = torch.linalg.solve(G + d * eye_g, grad)
            step = torch.linalg.solve(A + d * eye_a, step.T).T       # A symmetric: X (A + dI)⁻¹ = ((A + dI)⁻¹ Xᵀ)ᵀ
            out[m] = (step[:, :-1], step[:, -1]) if gb is not None else (step, None)
        return out
