"""Our CNN trunks as SB3 features extractors, so that the SB3 references run the very same
network (``policy_kwargs["features_extractor_class"]``). Imported only by ``sb3_ref``."""
from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from algorithms.core.nets import MinAtarCNN


class MinAtarExtractor(BaseFeaturesExtractor):
    """``MinAtarCNN`` (3×3 conv, 16 channels → 128 units) behind SB3's extractor interface."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128) -> None:
        c, h, w = observation_space.shape
        super().__init__(observation_space, features_dim)
        self.cnn = MinAtarCNN(c, h, w, features_dim)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.cnn(observations)
