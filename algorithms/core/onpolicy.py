"""What the on-policy actor-critics (PPO, NPG / TRPO, ACKTR) share: the VecEnv, an ``ActorCritic``
on the run's device, a ``RolloutBuffer`` of n_envs × n_steps, the step counter, and prediction on
observations normalised with the env's running statistics. Each algorithm adds its update."""
from __future__ import annotations

import numpy as np

from algorithms.base import Algorithm, BaseConfig
from algorithms.core.buffer import RolloutBuffer
from algorithms.core.nets import ActorCritic


class OnPolicyActorCritic(Algorithm):
    """Base of the on-policy actor-critics; ``cfg`` has n_envs, n_steps, log_std_init."""

    def __init__(self, cfg: BaseConfig, run) -> None:
        super().__init__(cfg, run)
        self.env = run.make_env(cfg.n_envs, gamma=cfg.gamma, norm_obs=cfg.norm_obs, norm_reward=cfg.norm_reward)
        self.policy = ActorCritic(self.env.single_observation_space, self.env.single_action_space,
                                  cfg.net_arch, cfg.activation, cfg.log_std_init, cnn=cfg.cnn).to(run.device)
        self.buffer = RolloutBuffer(cfg.n_steps, self.env, run.device)
        self.step = 0

    def remaining(self, step: int) -> float:
        """1 − t / B, floored at 0: the factor of a linear schedule after ``step`` of the run's B env steps."""
        return max(0.0, 1.0 - step / self.run.total_steps)

    def predict(self, obs: np.ndarray) -> np.ndarray:
        return self.policy.predict(self.env.normalize_obs(obs))

    def predict_stochastic(self, obs: np.ndarray) -> np.ndarray:
        return self.policy.sample(self.env.normalize_obs(obs))
