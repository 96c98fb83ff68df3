"""The one evaluation protocol, for our algorithms and the SB3 references alike.

Every evaluation plays ``n`` episodes on dedicated eval envs (raw rewards, no episodic
life, no reward clipping), episode j starting from ``reset(seed=eval_seed + j)``: the same
start states at every evaluation and for every algorithm, so differences between two
evaluations come from the policy only. Actions are the policy's deterministic ones.

Atari (``envs.yaml``'s atari family, built by ``experiments.envs.make_env(train=False)``): an
episode is the whole game, capped at ``eval_max_frames`` = 18 000 emulator frames (5 min of
play, Mnih et al. 2015); in games that wait for FIRE the env presses it at reset and after each
life loss, so a deterministic policy that never picks FIRE cannot stall until the cap. Classic
and MuJoCo eval envs are the bare ``gym.make`` env under the episode monitor.
"""
from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from experiments.envs import EnvSpec, make_env


class Evaluator:
    def __init__(self, spec: EnvSpec, n_episodes: int, eval_seed: int) -> None:
        self.envs = [make_env(spec, train=False) for _ in range(n_episodes)]
        self.seed = eval_seed
        space = self.envs[0].action_space
        self.bounds = (space.low, space.high) if isinstance(space, gym.spaces.Box) else None

    def start_observations(self) -> np.ndarray:
        return np.stack([e.reset(seed=self.seed + j)[0] for j, e in enumerate(self.envs)])

    def __call__(self, predict: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Returns the n episode returns."""
        obs = self.start_observations()
        n = len(self.envs)
        returns = np.zeros(n)
        active = np.ones(n, bool)
        while active.any():
            idx = np.flatnonzero(active)
            actions = predict(obs[idx])
            if self.bounds is not None:
                actions = np.clip(actions, *self.bounds)
            for k, i in enumerate(idx):
                o, r, term, trunc, _ = self.envs[i].step(actions[k])
                returns[i] += r
                obs[i] = o
                if term or trunc:
                    active[i] = False
        return returns

    def close(self) -> None:
        for e in self.envs:
            e.close()
