"""tanh for the MLPs, computed by NumPy's vectorised kernel on the CPU.

Why. On the CPU, torch 2.13's float32 ``tanh`` runs element by element (about 2 ns an element
on the AMD EPYC where issue 17 was measured: 275 µs for a 2 048 × 64 batch, where NumPy's SIMD
``np.tanh`` takes 21 µs and a 2 048 × 64 × 64 matrix product 165 µs). A PPO or TRPO update on a
64-unit MLP evaluates it hundreds of times, so it was a fifth of the update.

What changes. The forward value h = tanh(z) comes from ``np.tanh`` — within one ulp of torch's,
not bit-equal (a deliberate change of numerics, stated in issue 17's closing note); the rollout's
NumPy actor (core/fast.py) already used it. The backward is torch's own: ∂L/∂z = ∂L/∂h ⊙ (1 − h²)
from the output h (``aten.tanh_backward``, as autograd's tanh), and twice-differentiable (the
Fisher-vector products of ``core/fisher.py`` differentiate through it). Off the CPU, for other
dtypes, and inside torch.func transforms, torch's tanh. ``tests/test_activations.py`` checks value,
gradient and second derivative against torch's.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

_NUMPY_DTYPES = (torch.float32, torch.float64)


def _numpy_ok(x: torch.Tensor) -> bool:
    """A plain CPU float tensor (not one wrapped by torch.func's vmap/grad/jacrev: those get torch's tanh)."""
    return (x.device.type == "cpu" and x.dtype in _NUMPY_DTYPES and x.layout == torch.strided
            and not torch._C._functorch.is_functorch_wrapped_tensor(x))


def _numpy_tanh(z: torch.Tensor) -> torch.Tensor:
    """tanh(z) by ``np.tanh``, a new tensor (z a plain CPU float tensor)."""
    return torch.from_numpy(np.tanh(z.detach().numpy()))


class _Tanh(torch.autograd.Function):
    """h = tanh(z) by NumPy; ∂/∂z by ``aten.tanh_backward(∂L/∂h, h)`` (differentiable again)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        h = _numpy_tanh(z)
        ctx.save_for_backward(h)
        return h

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (h,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, h)


def tanh(z: torch.Tensor) -> torch.Tensor:
    """tanh(z), a new tensor (NumPy's kernel on CPU float tensors, autograd-aware)."""
    if not _numpy_ok(z):
        return torch.tanh(z)
    if z.requires_grad and torch.is_grad_enabled():
        return _Tanh.apply(z)
    return _numpy_tanh(z)


def tanh_(z: torch.Tensor) -> torch.Tensor:
    """tanh(z) in place, for tensors outside autograd (the explicit passes, core/explicit.py)."""
    if not _numpy_ok(z) or z.requires_grad or not z.is_contiguous():
        return z.tanh_()
    a = z.numpy()
    np.tanh(a, out=a)
    return z


class Tanh(nn.Tanh):
    """``nn.Tanh`` computed by ``tanh`` above (a subclass: module lists, state dicts and
    ``linear_stack`` see an ``nn.Tanh``)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return tanh(z)


ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": Tanh, "relu": nn.ReLU}
