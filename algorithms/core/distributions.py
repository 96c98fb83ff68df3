"""Action distributions written out in closed form.

Written here rather than taken from ``torch.distributions`` for two reasons: the closed
forms are what NPG/TRPO/ACER differentiate (KL, its gradient w.r.t. the statistics φ), and
they skip argument validation on the hot path. Tests compare them with torch.distributions.

A distribution is described by its statistics φ:
  * Categorical: logits (…, K)
  * DiagGaussian: (mean (…, D), log_std (…, D))

A distribution OWNS its statistics: none of its tensors shares storage with a parameter.
NPG/TRPO freeze π_old under ``no_grad`` and then write θ in place (``set_flat_params``);
ACER freezes π_avg and the behaviour statistics μ. Were a statistic a view of a parameter
(as ``log_std.expand_as(mean)`` of the policy's log σ used to be), it would move with θ, and
KL(π_old ‖ π_θ) would silently ignore the change of σ. Categorical's log_softmax always
allocates; DiagGaussian copies μ and log σ on construction (log σ before broadcasting it, so
the copy is D numbers; ``clone`` is differentiable, so gradients still flow through a live
distribution's μ and log σ).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class Categorical:
    logits: torch.Tensor  # unnormalised; normalised on construction

    def __post_init__(self) -> None:
        self.logits = torch.log_softmax(self.logits, -1)

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.exp()

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.multinomial(self.probs.reshape(-1, self.logits.shape[-1]), 1, generator=generator).reshape(
            self.logits.shape[:-1]
        )

    def mode(self) -> torch.Tensor:
        return self.logits.argmax(-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.logits.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        return -(self.probs * self.logits).sum(-1)

    def log_prob_grad(self, actions: torch.Tensor) -> tuple[torch.Tensor]:
        """∂ log π(a)/∂z for the logits z: onehot(a) − p."""
        g = -self.probs
        g.scatter_add_(-1, actions.long().unsqueeze(-1), torch.ones_like(g[..., :1]))
        return (g,)

    def log_prob_and_grad(self, actions: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
        """(log π(a), ∂ log π(a)/∂z)."""
        return self.log_prob(actions), self.log_prob_grad(actions)

    def entropy_grad(self) -> tuple[torch.Tensor]:
        """∂H/∂z = −p ⊙ (log p + H)."""
        p = self.probs
        return (-p * (self.logits + self.entropy().unsqueeze(-1)),)

    def kl(self, other: Categorical) -> torch.Tensor:
        """KL(self ‖ other) = Σ_a p(a) (log p(a) − log q(a))."""
        return (self.probs * (self.logits - other.logits)).sum(-1)

    def detach(self) -> Categorical:
        return Categorical(self.logits.detach())

    def __getitem__(self, idx) -> Categorical:
        return Categorical(self.logits[idx])


@dataclass
class DiagGaussian:
    mean: torch.Tensor
    log_std: torch.Tensor  # broadcastable to mean

    def __post_init__(self) -> None:
        # own the storage (see the module docstring): a copy, never a view of a parameter
        self.mean = self.mean.clone()
        self.log_std = self.log_std.clone().expand_as(self.mean)   # a view of our own copy, not of log σ

    @property
    def std(self) -> torch.Tensor:
        return self.log_std.exp()

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        z = (actions - self.mean) * torch.exp(-self.log_std)
        return (-0.5 * z.pow(2) - self.log_std - 0.5 * LOG_2PI).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (self.log_std + 0.5 * (1.0 + LOG_2PI)).sum(-1)

    def log_prob_grad(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(∂ log π(a)/∂μ, ∂ log π(a)/∂log σ) = ((a − μ)/σ², z² − 1), z = (a − μ)/σ."""
        return self.log_prob_and_grad(actions)[1]

    def log_prob_and_grad(self, actions: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """(log π(a), (∂/∂μ, ∂/∂log σ)) sharing z = (a − μ)/σ between the value and its gradient."""
        inv_std = torch.exp(-self.log_std)
        z = (actions - self.mean) * inv_std
        z2 = z.square()
        logp = -0.5 * z2.sum(-1) - (self.log_std + 0.5 * LOG_2PI).sum(-1)
        return logp, (z * inv_std, z2.sub_(1))

    def entropy_grad(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(∂H/∂μ, ∂H/∂log σ) = (0, 1)."""
        return torch.zeros_like(self.mean), torch.ones_like(self.mean)

    def kl(self, other: DiagGaussian) -> torch.Tensor:
        """KL(self ‖ other) = Σ_d log(σ_q/σ_p) + (σ_p² + (μ_p − μ_q)²) / (2σ_q²) − ½."""
        var_p = torch.exp(2 * self.log_std)
        var_q = torch.exp(2 * other.log_std)
        return (other.log_std - self.log_std + (var_p + (self.mean - other.mean).pow(2)) / (2 * var_q) - 0.5).sum(-1)

    def kl_grad(self, other: DiagGaussian) -> tuple[torch.Tensor, torch.Tensor]:
        """∇ of KL(self ‖ other) w.r.t. *other's* statistics (μ_q, log σ_q):
        ((μ_q − μ_p)/σ_q², 1 − (σ_p² + (μ_p − μ_q)²)/σ_q²)."""
        inv_var_q = torch.exp(-2 * other.log_std)
        diff = other.mean - self.mean
        return diff * inv_var_q, 1.0 - (torch.exp(2 * self.log_std) + diff.square()) * inv_var_q

    def detach(self) -> DiagGaussian:
        return DiagGaussian(self.mean.detach(), self.log_std.detach())

    def __getitem__(self, idx) -> DiagGaussian:
        return DiagGaussian(self.mean[idx], self.log_std[idx])


Distribution = Categorical | DiagGaussian
