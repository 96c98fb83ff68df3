"""``envs.yaml``: loading, validation, and the env constructors used by every run.

One constructor serves our algorithms and the SB3 references alike, so both see the same
wrappers, the same monitor (``RecordEpisodeStatistics``, innermost, raw rewards) and the
same evaluation protocol.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import jsonschema
import numpy as np
import yaml

from algorithms.base import ConfigError

ROOT = Path(__file__).resolve().parent.parent
ENVS_YAML = ROOT / "envs.yaml"
SCHEMA_DIR = Path(__file__).resolve().parent / "schema"

OPTIONAL_DEPS = {  # family → (module to import, install hint)
    "mujoco": ("mujoco", "pip install 'gymnasium[mujoco]' mujoco"),
    "atari": ("ale_py", "pip install 'gymnasium[atari]' ale-py"),
}


def validate_schema(data: Any, schema_name: str, source: str) -> None:
    """jsonschema validation whose error names the offending key's path."""
    schema = yaml.safe_load((SCHEMA_DIR / schema_name).read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        lines = [f"  at {'/'.join(str(p) for p in e.path) or '<root>'}: {e.message}" for e in errors[:10]]
        raise ConfigError(f"{source} does not match {schema_name}:\n" + "\n".join(lines))


@dataclass(frozen=True)
class EnvSpec:
    id: str
    family: str
    actions: str
    budget: dict[str, int]
    eval_freq: int
    eval_episodes: int
    threshold: float
    random_score: float
    hyperparams: dict[str, Any] = field(default_factory=dict)
    atari: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EnvCatalog:
    envs: dict[str, EnvSpec]
    suites: dict[str, list[str]]

    def get(self, env_id: str) -> EnvSpec:
        if env_id not in self.envs:
            raise ConfigError(f"unknown env {env_id!r}: not in envs.yaml; known: {', '.join(self.envs)}")
        return self.envs[env_id]

    def suite(self, name: str) -> list[str]:
        if name not in self.suites:
            raise ConfigError(f"unknown suite {name!r}; envs.yaml defines: {', '.join(self.suites)}")
        return self.suites[name]


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate mapping keys (PyYAML keeps the last silently:
    a second ``CartPole-v1:`` entry would replace the first unnoticed)."""

    def construct_mapping(self, node, deep=False):
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                continue                       # unhashable or odd keys: left to SafeLoader's checks
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_catalog(path: Path | str = ENVS_YAML) -> EnvCatalog:
    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    except FileNotFoundError:
        raise ConfigError(f"{path} not found") from None
    validate_schema(data, "envs.schema.yaml", str(path))
    fams = data["families"]
    envs: dict[str, EnvSpec] = {}
    for env_id, e in data["envs"].items():
        if e["family"] not in fams:
            raise ConfigError(f"{path}: at envs/{env_id}/family: unknown family {e['family']!r}; "
                              f"defined: {', '.join(fams)}")
        fam = fams[e["family"]]
        ev = e.get("eval", {})
        envs[env_id] = EnvSpec(
            id=env_id, family=e["family"], actions=e["actions"], budget=dict(e["budget"]),
            eval_freq=ev.get("freq", fam["eval_freq"]),
            eval_episodes=ev.get("episodes", fam["eval_episodes"]),
            threshold=float(e["threshold"]), random_score=float(e["random_score"]),
            hyperparams=dict(fam.get("hyperparams", {})), atari=dict(fam.get("atari", {})),
        )
    for suite, ids in data["suites"].items():
        for i, env_id in enumerate(ids):
            if env_id not in envs:
                raise ConfigError(f"{path}: at suites/{suite}/{i}: env {env_id!r} is not defined under envs")
    return EnvCatalog(envs, {k: list(v) for k, v in data["suites"].items()})


def check_dependencies(spec: EnvSpec) -> None:
    """A missing optional dependency is a clear error with the install hint."""
    if spec.family in OPTIONAL_DEPS:
        mod, hint = OPTIONAL_DEPS[spec.family]
        try:
            __import__(mod)
        except ImportError:
            raise ConfigError(f"env {spec.id!r} needs the optional package {mod!r}: {hint}") from None
    if spec.family == "atari":
        import ale_py
        gym.register_envs(ale_py)
    try:
        gym.spec(spec.id)
    except gym.error.Error as e:
        raise ConfigError(f"gymnasium does not know env {spec.id!r}: {e}") from None


ALE_V5 = {"repeat_action_probability": 0.25, "full_action_space": False,   # the ALE v5 defaults
          "max_num_frames_per_episode": 108_000}


def ale_kwargs(spec: EnvSpec) -> dict[str, Any]:
    """``gym.make`` keyword arguments of an Atari env: the v5 settings, stated explicitly
    (envs.yaml may override them), and ``frameskip=1``: AtariPreprocessing does the frame
    skipping, with max-pooling over the last two frames."""
    return {"frameskip": 1, **{k: spec.atari.get(k, v) for k, v in ALE_V5.items()}}


def make_env(spec: EnvSpec, train: bool) -> gym.Env:
    """One env with the family's wrappers. ``train=False`` builds the evaluation env:
    same observation pipeline, raw rewards, no episodic life.

    ``RecordEpisodeStatistics`` is always the innermost wrapper, so ``info["episode"]`` holds
    the raw return of the full episode (for Atari: the whole game, all lives, unclipped
    score; its length ``l`` counts emulator frames, not agent steps)."""
    if spec.family != "atari":
        return gym.wrappers.RecordEpisodeStatistics(gym.make(spec.id))
    import ale_py
    gym.register_envs(ale_py)
    a = spec.atari
    env = gym.wrappers.RecordEpisodeStatistics(gym.make(spec.id, **ale_kwargs(spec)))
    env = gym.wrappers.AtariPreprocessing(
        env, noop_max=a.get("noop_max", 30), frame_skip=a.get("frame_skip", 4),
        screen_size=a.get("screen_size", 84), terminal_on_life_loss=False, grayscale_obs=True,
        scale_obs=False)
    if train and a.get("terminal_on_life_loss", True):
        from stable_baselines3.common.atari_wrappers import EpisodicLifeEnv
        env = EpisodicLifeEnv(env)
    if train and a.get("clip_reward", True):
        env = gym.wrappers.TransformReward(env, np.sign)
    return gym.wrappers.FrameStackObservation(env, a.get("frame_stack", 4))


def env_fns(spec: EnvSpec, n: int, train: bool = True) -> list[Callable[[], gym.Env]]:
    return [functools.partial(make_env, spec, train) for _ in range(n)]
