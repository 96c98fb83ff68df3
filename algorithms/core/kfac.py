"""K-FAC: a Kronecker-factored Fisher per linear and conv layer (Martens & Grosse 2015; Grosse & Martens
2016 for convolutions; ACKTR, Wu et al. 2017).

For a linear layer s = W ā (ā = [a; 1], the layer's input with the bias folded in), the Fisher
block of vec(W) is E[(ā āᵀ) ⊗ (g gᵀ)] with g = ∂ log π(a|s_in)/∂s the back-propagated signal at
the layer's output, actions a drawn from π itself (the *true* Fisher, not the empirical one).
K-FAC assumes the two factors independent,

    F_W ≈ A ⊗ G,   A = E[ā āᵀ],   G = E[g gᵀ],

and treats the layers as independent (block-diagonal F). Then (A ⊗ G)⁻¹ vec(∇_W) = vec(G⁻¹ ∇_W A⁻¹),
two small inverses per layer instead of one inverse of F. Damping λ enters factored,
(G + √λ I)⁻¹ ∇_W (A + √λ I)⁻¹ (Martens & Grosse §6.3 without the π-correction).

A 2-d convolution (KFC, Grosse & Martens 2016) is a linear map W ā_t applied at every output
position t ∈ T to the input patch ā_t (unfolded, bias 1 appended); with spatially uncorrelated
derivatives and spatial homogeneity the block of vec(W) is |T|·Ω ⊗ Γ with
Ω = E[(1/|T|) Σ_t ā_t ā_tᵀ] and Γ = E[(1/|T|) Σ_t g_t g_tᵀ]; here A = Ω and G = |T|Γ = E[Σ_t g_t g_tᵀ]
(per sample), so that A ⊗ G is that block and a conv whose kernel covers its whole input (|T| = 1)
gets exactly the factors of the equivalent linear layer. The natural step of a conv weight is that
of the matrix W ∈ R^{C_out × C_in·k_h·k_w}, reshaped back.

``KFACFisher.record`` records ā and g with forward / backward hooks on every ``nn.Linear`` and
``nn.Conv2d`` of a module, installed only while the caller's Σ log π(a|s) for sampled actions is computed and
back-propagated; the factors are running averages (``decay``; 0 keeps only the last batch).
``natural_gradient`` turns given (weight, bias) gradients into the damped natural-gradient step.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

Layer = nn.Linear | nn.Conv2d


class KFACFisher:
    """Kronecker factors (A, G) of every ``nn.Linear`` and ``nn.Conv2d`` in ``module``; see the module docstring."""

    def __init__(self, module: nn.Module, damping: float = 1e-3, decay: float = 0.0) -> None:
        self.layers: list[Layer] = [m for m in module.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
        bad = [m for m in self.layers if isinstance(m, nn.Conv2d) and (m.groups != 1 or m.padding_mode != "zeros")]
        if bad:
            raise ValueError(f"K-FAC here factors plain convolutions only (groups 1, zero padding): {bad}")
        self.damping, self.decay = damping, decay
        self.A: dict[nn.Linear, torch.Tensor] = {}
        self.G: dict[nn.Linear, torch.Tensor] = {}
        self._a: dict[nn.Linear, torch.Tensor] = {}

    def _save_input(self, m: Layer, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        x = inp[0].detach()
        if isinstance(m, nn.Conv2d):   # patches ā_t: (N, C_in·k_h·k_w, |T|) → one row per (sample, position)
            x = F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride)
            a = x.transpose(1, 2).reshape(-1, x.shape[1])
        else:
            a = x.reshape(-1, m.in_features)
        self._a[m] = torch.cat([a, torch.ones_like(a[:, :1])], 1) if m.bias is not None else a

    def _save_grad(self, m: Layer, grad_in: tuple, grad_out: tuple[torch.Tensor, ...]) -> None:
        g = grad_out[0].detach()
        a = self._a[m]
        if isinstance(m, nn.Conv2d):   # g_t per (sample, position); n samples, |T| positions each
            n = g.shape[0]
            g = g.flatten(2).transpose(1, 2).reshape(-1, m.out_channels)
            positions = g.shape[0] // n
            # the caller back-propagates the SUM of log π over n samples: g is the per-sample signal
            self._update(self.A, m, a.T @ a / (n * positions))          # Ω
            self._update(self.G, m, g.T @ g / n)                        # |T|Γ
            return
        g = g.reshape(-1, m.out_features)
        n = a.shape[0]
        self._update(self.A, m, a.T @ a / n)
        self._update(self.G, m, g.T @ g / n)

    def _update(self, store: dict, m: Layer, new: torch.Tensor) -> None:
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

    def natural_gradient(self, grads: dict[Layer, tuple[torch.Tensor, torch.Tensor | None]]
                         ) -> dict[Layer, tuple[torch.Tensor, torch.Tensor | None]]:
        """(G + √λ I)⁻¹ [∇W, ∇b] (A + √λ I)⁻¹ per layer, for the given (weight, bias) gradients
        (a conv weight as the matrix C_out × C_in·k_h·k_w)."""
        out = {}
        d = self.damping ** 0.5
        for m in self.layers:
            gw, gb = grads[m]
            shape = gw.shape
            gw = gw.reshape(shape[0], -1)
            grad = torch.cat([gw, gb[:, None]], 1) if gb is not None else gw
            A, G = self.A[m], self.G[m]
            eye_a = torch.eye(len(A), dtype=A.dtype, device=A.device)
            eye_g = torch.eye(len(G), dtype=G.dtype, device=G.device)
            step = torch.linalg.solve(G + d * eye_g, grad)
            step = torch.linalg.solve(A + d * eye_a, step.T).T       # A symmetric: X (A + dI)⁻¹ = ((A + dI)⁻¹ Xᵀ)ᵀ
            out[m] = (step[:, :-1].reshape(shape), step[:, -1]) if gb is not None else (step.reshape(shape), None)
        return out
