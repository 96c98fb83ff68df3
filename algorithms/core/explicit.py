"""Explicit back-propagation through the MLP actor-critics, and Adam and RMSProp on one flat vector θ.

Why. For the 64-unit MLPs of classic control and MuJoCo a minibatch step costs almost nothing
in arithmetic; on a CPU its time is the per-node overhead of the autograd engine and the
per-tensor bookkeeping of ``torch.optim`` (issue 17: ~1 ms of ~1.2 ms per PPO minibatch). Here
the backward pass is written out — a few matrix products per layer — the gradient lands in
one flat buffer, and clipping and Adam are a handful of vector operations on it.

Layer l of an MLP (``nn.Linear`` weights W_l of shape out × in), f = tanh or ReLU, the last
layer (the head) linear:

    z_l = h_{l−1} W_lᵀ + b_l,       h_l = f(z_l)

and, given ∂L/∂h_l,

    ∂L/∂z_l = ∂L/∂h_l ⊙ f′(z_l)          f′ = 1 − h_l² (tanh), 1[z_l > 0] (ReLU)
    ∂L/∂W_l = (∂L/∂z_l)ᵀ h_{l−1},    ∂L/∂b_l = Σ_i (∂L/∂z_l)_i,    ∂L/∂h_{l−1} = (∂L/∂z_l) W_l

The loss-specific part, ∂L/∂φ for the distribution's statistics φ and ∂L/∂V, is the
algorithm's (PPO's clipped surrogate, the critic's squared error), written with the closed
forms of ``core/distributions.py``. ``tests/test_explicit.py`` checks every gradient and every
Adam step against autograd and ``torch.optim.Adam`` on the same inputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from algorithms.core.activations import tanh_
from algorithms.core.nets import ActorCritic, linear_stack


class FlatParams:
    """θ as one contiguous vector: each parameter's storage becomes a view of ``theta``, and each
    gradient a view of ``grad``. The parameters stay the module's leaf ``nn.Parameter``s (state
    dicts, checkpoints and autograd elsewhere see no difference); writing ``theta`` in place
    moves them all."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = list(params)
        with torch.no_grad():
            self.theta = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.grad = torch.zeros_like(self.theta)
        self.index = {id(p): k for k, p in enumerate(self.params)}
        for p, t in zip(self.params, self.views(self.theta)):
            p.data = t
        self.grad_of = {id(p): g for p, g in zip(self.params, self.views(self.grad))}

    def check(self) -> None:
        """Raise if a parameter no longer aliases θ (``module.to(...)``/``.double()`` after construction
        replaces its storage: the update would then write a vector nobody reads)."""
        for p, t in zip(self.params, self.views(self.theta)):
            if p.data_ptr() != t.data_ptr() or p.dtype != t.dtype:
                raise RuntimeError("a parameter no longer aliases the flat vector θ (was the module moved or "
                                   "cast after the algorithm was built?); build the algorithm on the final "
                                   "device and dtype")

    def views(self, vec: torch.Tensor) -> list[torch.Tensor]:
        """``vec`` (laid out as θ) cut into views shaped like each parameter."""
        out, i = [], 0
        for p in self.params:
            out.append(vec[i:i + p.numel()].view_as(p))
            i += p.numel()
        return out

    def autograd(self, loss: torch.Tensor) -> None:
        """grad ← ∇_θ loss by autograd (networks the explicit pass does not cover: CNNs)."""
        grads = torch.autograd.grad(loss, self.params)
        torch.cat([g.reshape(-1) for g in grads], out=self.grad)

    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """g ← g · min(1, c / (‖g‖₂ + 10⁻⁶)), as ``torch.nn.utils.clip_grad_norm_``; returns ‖g‖₂."""
        norm = torch.linalg.vector_norm(self.grad)
        self.grad.mul_((max_norm / (norm + 1e-6)).clamp_(max=1.0))
        return norm


class FlatAdam:
    """Adam (Kingma & Ba 2015) on a ``FlatParams``, computed as ``torch.optim.Adam`` computes it:

        m ← β₁ m + (1 − β₁) g,    v ← β₂ v + (1 − β₂) g²,
        θ ← θ − α/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
    """

    def __init__(self, flat: FlatParams, lr: float, eps: float = 1e-8,
                 betas: tuple[float, float] = (0.9, 0.999)) -> None:
        self.flat, self.lr, self.eps, self.betas = flat, lr, eps, betas
        self.m = torch.zeros_like(flat.theta)
        self.v = torch.zeros_like(flat.theta)
        self.t = 0

    @torch.no_grad()
    def step(self) -> None:
        (b1, b2), g, theta = self.betas, self.flat.grad, self.flat.theta
        self.t += 1
        self.m.lerp_(g, 1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (self.v.sqrt() / math.sqrt(1 - b2 ** self.t)).add_(self.eps)
        theta.addcdiv_(self.m, denom, value=-self.lr / (1 - b1 ** self.t))

    def state_dict(self) -> dict:
        return {"m": self.m.clone(), "v": self.v.clone(), "t": self.t, "lr": self.lr}

    def load_state_dict(self, s: dict) -> None:
        self.m.copy_(s["m"])
        self.v.copy_(s["v"])
        self.t, self.lr = int(s["t"]), float(s["lr"])


class FlatRMSprop:
    """RMSProp on a ``FlatParams``, as ``torch.optim.RMSprop`` computes it (no momentum, not centred):

        s ← α s + (1 − α) g²,    θ ← θ − lr · g / (√s + ε)

    or, with ``tf_like``, as SB3's ``RMSpropTFLike`` (TensorFlow's, OpenAI Baselines' ACER):
    s starts at 1 and θ ← θ − lr · g / √(s + ε)."""

    def __init__(self, flat: FlatParams, lr: float, alpha: float = 0.99, eps: float = 1e-8,
                 tf_like: bool = False) -> None:
        self.flat, self.lr, self.alpha, self.eps, self.tf_like = flat, lr, alpha, eps, tf_like
        self.square_avg = torch.ones_like(flat.theta) if tf_like else torch.zeros_like(flat.theta)

    @torch.no_grad()
    def step(self) -> None:
        g, s = self.flat.grad, self.square_avg
        s.mul_(self.alpha).addcmul_(g, g, value=1 - self.alpha)
        denom = s.add(self.eps).sqrt_() if self.tf_like else s.sqrt().add_(self.eps)
        self.flat.theta.addcdiv_(g, denom, value=-self.lr)

    def state_dict(self) -> dict:
        return {"square_avg": self.square_avg.clone(), "lr": self.lr, "tf_like": self.tf_like}

    def load_state_dict(self, s: dict) -> None:
        if bool(s.get("tf_like")) != self.tf_like or s["square_avg"].shape != self.square_avg.shape:
            raise ValueError("RMSProp state of another variant or parameter count")
        self.square_avg.copy_(s["square_avg"])
        self.lr = float(s["lr"])


@dataclass
class Layer:
    W: torch.Tensor     # (out, in), aliases the parameter
    Wt: torch.Tensor    # its transpose (a view, made once)
    b: torch.Tensor
    dW: torch.Tensor    # views of FlatParams.grad
    db: torch.Tensor
    act: str            # "tanh", "relu" or "id"
    iW: int             # W's and b's positions in FlatParams.params (for FlatParams.views)
    ib: int


def supports(policy: ActorCritic) -> bool:
    """Explicit backward applies to separate MLP actor and critic on flat observations."""
    return (not policy.share and linear_stack(policy.pi_trunk) is not None
            and linear_stack(policy.v_trunk) is not None)


def layers(trunk: nn.Module, head: nn.Linear | None, flat: FlatParams) -> list[Layer]:
    """The trunk's layers and the head (if any), bound to ``flat``'s parameter and gradient views."""
    lins = linear_stack(trunk) + ([(head, "id")] if head is not None else [])
    return [Layer(m.weight.detach(), m.weight.detach().t(), m.bias.detach(), flat.grad_of[id(m.weight)],
                  flat.grad_of[id(m.bias)], a, flat.index[id(m.weight)], flat.index[id(m.bias)]) for m, a in lins]


def activate_(z: torch.Tensor, act: str) -> torch.Tensor:
    """h = f(z), in place."""
    if act == "tanh":
        return tanh_(z)
    return z.relu_() if act == "relu" else z


def activation_backward(d: torch.Tensor, h: torch.Tensor, act: str) -> torch.Tensor:
    """∂L/∂z = ∂L/∂h ⊙ f′(z), from h = f(z)."""
    if act == "tanh":
        return torch.ops.aten.tanh_backward(d, h)              # d ⊙ (1 − h²)
    if act == "relu":
        return torch.ops.aten.threshold_backward(d, h, 0)      # d ⊙ 1[h > 0]
    return d


def forward(net: list[Layer], x: torch.Tensor) -> list[torch.Tensor]:
    """[h_0 = x, h_1, …, h_L]: every layer's output, kept for the backward pass."""
    hs = [x if x.dim() == 2 else x.reshape(x.shape[0], -1)]
    for L in net:
        hs.append(activate_(torch.addmm(L.b, hs[-1], L.Wt), L.act))
    return hs


def backward(net: list[Layer], hs: list[torch.Tensor], d_out: torch.Tensor,
             input_grad: bool = False) -> torch.Tensor | None:
    """Write ∂L/∂W_l and ∂L/∂b_l of every layer into its gradient views, given ∂L/∂h_L = ``d_out``;
    with ``input_grad``, return ∂L/∂h_0 (for a network whose input is another's output)."""
    d = d_out
    for l in range(len(net) - 1, -1, -1):
        L = net[l]
        d = activation_backward(d, hs[l + 1], L.act)
        torch.mm(d.t(), hs[l], out=L.dW)
        torch.sum(d, 0, out=L.db)
        if l or input_grad:
            d = torch.mm(d, L.W)
    return d if input_grad else None


def jvp(net: list[Layer], hs: list[torch.Tensor], v: list[torch.Tensor]) -> torch.Tensor:
    """J v: the output's directional derivative along the parameter direction ``v`` (per-parameter
    views, ``FlatParams.views``), by forward mode with dh_0 = 0:

        dz_l = dh_{l−1} W_lᵀ + h_{l−1} dW_lᵀ + db_l,    dh_l = f′(z_l) ⊙ dz_l
    """
    d = None
    for l, L in enumerate(net):
        dz = torch.addmm(v[L.ib], hs[l], v[L.iW].t())
        if d is not None:
            dz.addmm_(d, L.Wt)
        d = activation_backward(dz, hs[l + 1], L.act)
    return d
