"""What an algorithm is, to the runner.

An algorithm is a class with a typed ``Config`` dataclass (its hyper-parameters, SB3 names
where the concept is the same), the action spaces it handles, ``learn(run)`` and
``predict(obs)``. The runner owns everything else: envs, evaluation, logging, checkpoints.
"""
from __future__ import annotations

import abc
import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

import gymnasium as gym
import numpy as np
import torch

from algorithms.core.envs import VecEnv


class ConfigError(ValueError):
    """A user error in a configuration: unknown key, wrong type, bad value."""


class Run(Protocol):
    """The runner's side of the contract, handed to ``Algorithm.learn``."""

    total_steps: int
    seed: int
    device: torch.device
    env_id: str

    def make_env(self, n_envs: int, *, gamma: float = 0.99, norm_obs: bool = False,
                 norm_reward: bool = False) -> VecEnv: ...

    def env_fns(self, n_envs: int) -> list:
        """Constructors of the family-wrapped envs (for libraries with their own VecEnv)."""
        ...

    def log_update(self, step: int, diagnostics: Mapping[str, float],
                   episode_returns: list[float] | None = None) -> None:
        """Called once per policy update with env steps so far: writes a progress row,
        runs the evaluation when due, checks for divergence, saves checkpoints.
        ``episode_returns`` defaults to the episodes finished in envs from ``make_env``."""


@dataclasses.dataclass
class BaseConfig:
    """Hyper-parameters every algorithm shares."""

    n_envs: int = 1
    gamma: float = 0.99
    net_arch: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    norm_obs: bool = False
    norm_reward: bool = False
    cnn: str = "nature"                 # image observations: "nature" (Atari) or "minatar" trunk

    def __post_init__(self) -> None:
        from algorithms.core.nets import CNNS
        if self.cnn not in CNNS:
            raise ConfigError(f"cnn must be one of {CNNS}, got {self.cnn!r}")


class Algorithm(abc.ABC):
    name: ClassVar[str]
    Config: ClassVar[type[BaseConfig]]
    discrete: ClassVar[bool] = True     # handles gym.spaces.Discrete actions
    continuous: ClassVar[bool] = True   # handles gym.spaces.Box actions

    def __init__(self, cfg: BaseConfig, run: Run) -> None:
        self.cfg, self.run = cfg, run

    @abc.abstractmethod
    def learn(self) -> None:
        """Train for ``run.total_steps`` env steps, calling ``run.log_update`` after each update."""

    @abc.abstractmethod
    def predict(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions for a batch of *raw* observations (evaluation)."""

    def predict_stochastic(self, obs: np.ndarray) -> np.ndarray:
        """Actions *sampled* from π_θ(·|s) for a batch of raw observations: the policy whose expected
        return J(π) the policy-gradient theorems are about (claim C3's true-objective check,
        ``--eval-policy stochastic``). Optional; the runner draws with its own seeded torch RNG."""
        raise NotImplementedError

    def parameter_vectors(self) -> list[torch.Tensor] | None:
        """Tensors that together hold every parameter of the algorithm's modules (its flat θ vectors, when
        it keeps them), for the runner's divergence check after every update: one ``isfinite`` over each
        instead of one per parameter. None (the default): the runner checks the parameters one by one."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume training (checkpoints): networks, optimisers, step
        counters, replay memory. The runner itself saves the envs made by ``run.make_env``
        (their exact state and normalisation statistics) and the RNG states."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Inverse of ``state_dict``."""

    @classmethod
    def check_action_space(cls, space: gym.Space) -> None:
        ok = (isinstance(space, gym.spaces.Discrete) and cls.discrete) or (
            isinstance(space, gym.spaces.Box) and cls.continuous)
        if not ok:
            kinds = [k for k, v in (("Discrete", cls.discrete), ("Box", cls.continuous)) if v]
            raise ConfigError(f"algorithm {cls.name!r} cannot handle action space {space}; "
                              f"it supports: {', '.join(kinds)}")


# --- typed hyper-parameter parsing ----------------------------------------------------

def _coerce(name: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(name, value, args[0])
    if origin is tuple:
        (elt, *_rest) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return tuple(_coerce(name, v, elt) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{name}: expected a bool (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected an int, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            f = float(str(value).replace("_", ""))
        except ValueError:
            raise ConfigError(f"{name}: expected an int, got {value!r}") from None
        if not f.is_integer():
            raise ConfigError(f"{name}: expected an int, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected a float, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a float, got {value!r}") from None
    if tp is str:
        return str(value)
    raise ConfigError(f"{name}: unsupported type {tp}")


def build_config(cls: type[BaseConfig], overrides: Mapping[str, Any], where: str = "") -> BaseConfig:
    """Defaults of ``cls`` updated by ``overrides``; unknown keys and bad values are a
    ``ConfigError`` that lists the valid keys."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"unknown hyper-parameter(s) {unknown}{where}; valid keys for "
                          f"{cls.__name__}: {', '.join(sorted(fields))}")
    values = {k: _coerce(k, v, hints[k]) for k, v in overrides.items()}
    cfg = cls(**values)
    validate = getattr(cfg, "validate", None)
    if validate is not None:
        validate()
    return cfg


def config_dict(cfg: BaseConfig) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
