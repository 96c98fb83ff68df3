"""Name → algorithm. Adding an algorithm is one file in ``algorithms/`` and one line here.

Entries are "module:Class" strings, imported only when used, so a missing optional
dependency of one algorithm does not break the others. A variant (an ablation, a preset) is
a ``("module:Class", {hyper-parameter: value})`` pair: same code, different defaults.
"""
from __future__ import annotations

import importlib
from typing import Any

from algorithms.base import Algorithm, ConfigError

Target = str | type[Algorithm] | tuple[str | type[Algorithm], dict[str, Any]]

ALGORITHMS: dict[str, Target] = {
    "ppo": "algorithms.ppo:PPO",
    "sb3-ppo": "algorithms.sb3_ref:SB3PPO",
    "sb3-trpo": "algorithms.sb3_ref:SB3TRPO",
    "sb3-a2c": "algorithms.sb3_ref:SB3A2C",
    "npg": "algorithms.trpo:NPG",
    "trpo": "algorithms.trpo:TRPO",
    "acer": "algorithms.acer:ACER",
    "acer-no-trunc": ("algorithms.acer:ACER", {"truncation": False}),
    "acer-no-tr": ("algorithms.acer:ACER", {"trust_region": False}),
    "acer-no-retrace": ("algorithms.acer:ACER", {"retrace": False}),
    "acer-no-replay": ("algorithms.acer:ACER", {"replay_ratio": 0}),
    "acktr": "algorithms.acktr:ACKTR",
}


def register(name: str, target: Target) -> None:
    """Register at run time (plugins, tests). ``target`` as in ``ALGORITHMS``."""
    ALGORITHMS[name] = target


def get(name: str) -> tuple[type[Algorithm], dict[str, Any]]:
    """The algorithm class registered under ``name`` and the variant's preset overrides."""
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {name!r}; known: {', '.join(sorted(ALGORITHMS))}")
    target, preset = ALGORITHMS[name], {}
    if isinstance(target, tuple):
        target, preset = target
    if isinstance(target, str):
        module, cls = target.split(":")
        try:
            target = getattr(importlib.import_module(module), cls)
        except ImportError as e:
            raise ConfigError(f"algorithm {name!r} needs a package that is not installed ({e}); "
                              "run `pip install -e .` from the repository root") from e
    return target, dict(preset)


def base_name(name: str) -> str:
    """For a variant, the name its class is registered under on its own (``acer-no-tr`` →
    ``acer``), so that variants share the base algorithm's per-env hyper-parameters."""
    target = ALGORITHMS.get(name)
    if isinstance(target, tuple):
        for other, t in ALGORITHMS.items():
            if t == target[0]:
                return other
    return name
