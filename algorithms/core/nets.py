"""Networks: MLPs with orthogonal init, the Nature-DQN and MinAtar CNN trunks, and the actor-critic
used by PPO, NPG and TRPO.

The policy head outputs the statistics φ of its distribution (logits, or a mean with a
state-independent log σ), so that natural-gradient code can differentiate through φ.
"""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from algorithms.core.activations import ACTIVATIONS, Tanh
from algorithms.core.distributions import Categorical, DiagGaussian, Distribution


def ortho_init(module: nn.Module, gain: float = math.sqrt(2)) -> nn.Module:
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d):
            nn.init.orthogonal_(m.weight, gain)
            nn.init.zeros_(m.bias)
    return module


def linear_stack(module: nn.Module) -> list[tuple[nn.Linear, str]] | None:
    """[(Linear, activation after it: "tanh", "relu" or "id")] of a Flatten/Linear/Tanh/ReLU stack
    (what ``mlp`` builds), or None if the module is anything else (a CNN). Read by the NumPy rollout
    actor (core/fast.py) and the explicit backward pass (core/explicit.py)."""
    out: list[tuple[nn.Linear, str]] = []
    for m in (m for m in module.modules() if not isinstance(m, nn.Sequential)):
        if isinstance(m, nn.Linear):
            out.append((m, "id"))
        elif isinstance(m, nn.Tanh | nn.ReLU) and out and out[-1][1] == "id":
            out[-1] = (out[-1][0], "tanh" if isinstance(m, nn.Tanh) else "relu")
        elif not isinstance(m, nn.Flatten):
            return None
    return out


def mlp(in_dim: int, hidden: tuple[int, ...], activation: type[nn.Module] = Tanh) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(in_dim, h), activation()]
        in_dim = h
    return nn.Sequential(*layers)


class NatureCNN(nn.Module):
    """Mnih et al. 2015 trunk: uint8 (C, 84, 84) frames → 512 features, scaled by 1/255."""

    def __init__(self, in_channels: int, features: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 32, 8, 4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, features), nn.ReLU(),
        )
        self.out_dim = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / 255.0)


class MinAtarCNN(nn.Module):
    """Young & Tian 2019 (MinAtar) trunk: (n, 10, 10) binary grid → one 3×3 convolution with 16
    channels, stride 1 → ReLU → 128 units → ReLU. Inputs are 0/1 already: no scaling."""

    def __init__(self, in_channels: int, height: int = 10, width: int = 10, features: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(16 * (height - 2) * (width - 2), features), nn.ReLU(),
        )
        self.out_dim = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float())


CNNS = ("nature", "minatar")   # BaseConfig.cnn: the trunk for image observations


def is_image_space(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def make_trunk(obs_space: gym.Space, hidden: tuple[int, ...], activation: type[nn.Module],
               cnn: str = "nature") -> tuple[nn.Module, int]:
    """A feature extractor for the observation space and its output width: for images the CNN
    named by ``cnn`` (``CNNS``), otherwise an MLP with ``hidden`` units."""
    if is_image_space(obs_space):
        c, h, w = obs_space.shape
        trunk = NatureCNN(c) if cnn == "nature" else MinAtarCNN(c, h, w)
        return trunk, trunk.out_dim
    in_dim = int(np.prod(obs_space.shape))
    if not hidden:
        return nn.Flatten(), in_dim
    return nn.Sequential(nn.Flatten(), mlp(in_dim, hidden, activation)), hidden[-1]


class PolicyHead(nn.Module):
    """Maps features to the statistics φ of a Categorical or diagonal Gaussian."""

    def __init__(self, in_dim: int, action_space: gym.Space, log_std_init: float = 0.0) -> None:
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        out = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.linear = ortho_init(nn.Linear(in_dim, out), gain=0.01)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((out,), float(log_std_init)))

    def forward(self, features: torch.Tensor) -> Distribution:
        return self.distribution(self.linear(features))

    def distribution(self, phi: torch.Tensor) -> Distribution:
        """π(·|s) from the head's output φ (logits, or the mean with this head's log σ)."""
        if self.discrete:
            return Categorical(phi)
        return DiagGaussian(phi, self.log_std)


class ActorCritic(nn.Module):
    """π_θ(a|s) and V_φ(s). With ``share_trunk`` (images) both heads read one trunk; otherwise
    actor and critic are separate networks, as in SB3's MLP policies."""

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.Space,
        hidden: tuple[int, ...] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
        share_trunk: bool | None = None,
        cnn: str = "nature",
    ) -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        self.share = is_image_space(obs_space) if share_trunk is None else share_trunk
        self.pi_trunk, d = make_trunk(obs_space, hidden, act, cnn)
        self.v_trunk = self.pi_trunk if self.share else make_trunk(obs_space, hidden, act, cnn)[0]
        ortho_init(self.pi_trunk)
        if not self.share:
            ortho_init(self.v_trunk)
        self.pi = PolicyHead(d, action_space, log_std_init)
        self.v = ortho_init(nn.Linear(d, 1), gain=1.0)

    def dist(self, obs: torch.Tensor) -> Distribution:
        return self.pi(self.pi_trunk(obs))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.v(self.v_trunk(obs)).squeeze(-1)

    def forward(self, obs: torch.Tensor) -> tuple[Distribution, torch.Tensor]:
        if self.share:
            f = self.pi_trunk(obs)
            return self.pi(f), self.v(f).squeeze(-1)
        return self.dist(obs), self.value(obs)

    @torch.inference_mode()
    def predict(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic action (mode of π_θ(·|s)) for a batch of already-normalised observations."""
        return self.dist(torch.as_tensor(obs, device=self.v.weight.device)).mode().cpu().numpy()

    @torch.inference_mode()
    def sample(self, obs: np.ndarray) -> np.ndarray:
        """An action drawn from π_θ(·|s) for a batch of already-normalised observations."""
        return self.dist(torch.as_tensor(obs, device=self.v.weight.device)).sample().cpu().numpy()

    def actor_parameters(self) -> list[nn.Parameter]:
        """θ: what the natural gradient acts on (trunk + head + log σ)."""
        return list(self.pi_trunk.parameters()) + list(self.pi.parameters())

    def critic_parameters(self) -> list[nn.Parameter]:
        ids = {id(p) for p in self.actor_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]
