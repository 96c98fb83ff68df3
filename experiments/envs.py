"""``envs.yaml``: loading, validation, and the env constructors used by every run.

One constructor serves our algorithms and the SB3 references alike, so both see the same
wrappers, the same monitor (``RecordEpisodeStatistics``, innermost, raw rewards) and the
same evaluation protocol.
"""
from __future__ import annotations

import difflib
import functools
import math
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
    "minatar": ("minatar", "pip install minatar"),
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
    minatar: dict[str, Any] = field(default_factory=dict)
    catalogued: bool = True   # False: inferred from gymnasium's registration (``infer_spec``)


@dataclass(frozen=True)
class EnvCatalog:
    envs: dict[str, EnvSpec]
    suites: dict[str, list[str]]
    families: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, env_id: str, infer: bool = False) -> EnvSpec:
        """The catalogued spec of ``env_id``. With ``infer`` (one run, ``experiments.run``) an id
        gymnasium registers but envs.yaml lacks gets its family's defaults (``infer_spec``);
        without it (the DAG, which needs budgets) such an id is an error that says so."""
        if env_id in self.envs:
            return self.envs[env_id]
        if infer:
            return infer_spec(env_id, self.families, list(self.envs))
        hint = ""
        if _registered(env_id):
            hint = (" (gymnasium registers it: `python -m experiments.run` runs it uncatalogued, the DAG "
                    "needs its budgets in envs.yaml)")
        raise ConfigError(f"unknown env {env_id!r}: not in envs.yaml{hint}; known: {', '.join(self.envs)}")

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
            minatar=dict(fam.get("minatar", {})),
        )
    for suite, ids in data["suites"].items():
        for i, env_id in enumerate(ids):
            if env_id not in envs:
                raise ConfigError(f"{path}: at suites/{suite}/{i}: env {env_id!r} is not defined under envs")
    return EnvCatalog(envs, {k: list(v) for k, v in data["suites"].items()}, {k: dict(v) for k, v in fams.items()})


# ---- envs outside the catalogue -------------------------------------------------------------
# Family of a registered id, from the module of its entry point (gymnasium's registration).
ENTRY_POINT_FAMILIES = {
    "gymnasium.envs.classic_control": "classic",
    "gymnasium.envs.mujoco": "mujoco",
    "ale_py": "atari",
    "shimmy.atari_env": "atari",
}
MINATAR_PREFIX = "MinAtar/"


def _register_optional_envs() -> None:
    """Make gymnasium's registry hold the ALE ids (registered on ``ale_py`` import) and the
    MinAtar ids (``minatar.gym.register_envs``, which ``import minatar`` does not call)."""
    try:
        import ale_py
        gym.register_envs(ale_py)
    except ImportError:
        pass
    register_minatar()


def register_minatar() -> None:
    if "MinAtar/Breakout-v0" in gym.registry:
        return
    try:
        import minatar.gym
    except ImportError:
        return
    minatar.gym.register_envs()


def _registered(env_id: str) -> bool:
    _register_optional_envs()
    return env_id in gym.registry


def entry_point_module(env_id: str) -> str:
    """The module of ``env_id``'s registered entry point ("pkg.mod:Class" or a callable)."""
    ep = gym.spec(env_id).entry_point
    return ep.split(":")[0] if isinstance(ep, str) else getattr(ep, "__module__", "") or ""


def closest_ids(env_id: str, known: list[str], n: int = 5) -> list[str]:
    """The ids most like ``env_id`` (difflib ratio ≥ 0.6), from gymnasium's registry and ``known``."""
    _register_optional_envs()
    return difflib.get_close_matches(env_id, sorted(set(gym.registry) | set(known)), n=n, cutoff=0.6)


def infer_family(env_id: str, families: dict[str, dict[str, Any]]) -> str:
    """envs.yaml's family for an uncatalogued id: ``MinAtar/…`` → ``minatar`` (if envs.yaml defines
    it), else the family of the entry point's package (``ENTRY_POINT_FAMILIES``)."""
    if env_id.startswith(MINATAR_PREFIX):
        if "minatar" not in families:
            raise ConfigError(f"env {env_id!r} is a MinAtar id, and envs.yaml defines no `minatar` family; "
                              f"add one under families (eval_freq, eval_episodes) and install MinAtar. "
                              f"Defined families: {', '.join(families)}")
        return "minatar"
    module = entry_point_module(env_id)
    for prefix, fam in ENTRY_POINT_FAMILIES.items():
        if (module == prefix or module.startswith(prefix + ".")) and fam in families:
            return fam
    raise ConfigError(f"env {env_id!r} is registered by {module or 'an unnamed entry point'!r}, which belongs to "
                      f"none of envs.yaml's families ({', '.join(families)}); add the env to envs.yaml with "
                      "its family")


def infer_spec(env_id: str, families: dict[str, dict[str, Any]], known: list[str]) -> EnvSpec:
    """An ``EnvSpec`` for an id gymnasium registers but envs.yaml lacks: the family's eval
    protocol (``eval_freq``, ``eval_episodes``), hyper-parameters and Atari settings; the action
    kind read from the env's action space; no budgets, and threshold = random score = NaN (what
    envs.yaml would add). An id gymnasium does not know is an error naming the closest ids."""
    if not env_id.startswith(MINATAR_PREFIX) and not _registered(env_id):
        close = closest_ids(env_id, known)
        raise ConfigError(f"unknown env {env_id!r}: neither in envs.yaml nor registered with gymnasium"
                          + (f"; closest: {', '.join(close)}" if close else ""))
    family = infer_family(env_id, families)
    if not _registered(env_id):   # a MinAtar id whose package is not installed
        raise ConfigError(f"unknown env {env_id!r}: gymnasium does not know it; install MinAtar "
                          "(pip install minatar), which registers the MinAtar/ ids")
    fam = families[family]
    env = gym.make(env_id)
    try:
        actions = "discrete" if isinstance(env.action_space, gym.spaces.Discrete) else "continuous"
    finally:
        env.close()
    return EnvSpec(id=env_id, family=family, actions=actions, budget={}, eval_freq=int(fam["eval_freq"]),
                   eval_episodes=int(fam["eval_episodes"]), threshold=math.nan, random_score=math.nan,
                   hyperparams=dict(fam.get("hyperparams", {})), atari=dict(fam.get("atari", {})),
                   minatar=dict(fam.get("minatar", {})), catalogued=False)


def uncatalogued_note(spec: EnvSpec) -> str:
    """One line: what running ``spec`` outside envs.yaml leaves out."""
    return (f"note: {spec.id} is not in envs.yaml; running it with the {spec.family!r} family's defaults "
            f"(eval every {spec.eval_freq} steps, {spec.eval_episodes} episodes). envs.yaml would add budgets "
            "per profile (for the DAG), a success threshold and a random-policy score (for normalised scores); "
            "summary.json records catalogued: false.")


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
    if spec.family == "minatar":
        register_minatar()
    try:
        gym.spec(spec.id)
    except gym.error.Error as e:
        raise ConfigError(f"gymnasium does not know env {spec.id!r}: {e}") from None


ALE_V5 = {"repeat_action_probability": 0.25, "full_action_space": False,   # the ALE v5 defaults
          "max_num_frames_per_episode": 108_000}


def ale_kwargs(spec: EnvSpec, train: bool = True) -> dict[str, Any]:
    """``gym.make`` keyword arguments of an Atari env: the v5 settings, stated explicitly
    (envs.yaml may override them), and ``frameskip=1``: AtariPreprocessing does the frame
    skipping, with max-pooling over the last two frames. The evaluation env (``train=False``)
    is truncated at ``eval_max_frames`` emulator frames where envs.yaml sets it (the ALE counts
    every frame since reset, no-op starts included)."""
    kw = {"frameskip": 1, **{k: spec.atari.get(k, v) for k, v in ALE_V5.items()}}
    if not train and "eval_max_frames" in spec.atari:
        kw["max_num_frames_per_episode"] = spec.atari["eval_max_frames"]
    return kw


def needs_fire(env: gym.Env) -> bool:
    """The games that stand still until FIRE: action 1 is FIRE and there are ≥ 3 actions, the
    condition SB3's ``FireResetEnv`` asserts (``get_action_meanings()[1] == "FIRE"``, length ≥ 3)."""
    meanings = env.unwrapped.get_action_meanings()
    return len(meanings) >= 3 and meanings[1] == "FIRE"


class FireReset(gym.Wrapper):
    """Presses FIRE where a game waits for it. ``reset`` is SB3's ``FireResetEnv.reset``: reset,
    step(1) (FIRE), step(2), resetting again if either step ends the game. With
    ``on_life_loss`` a life loss that does not end the episode is followed by the same two steps
    (their rewards added, the last observation returned): what a training env gets from
    ``EpisodicLifeEnv`` + ``FireResetEnv`` (the life loss ends its episode, the reset fires), for
    an env that plays whole games (evaluation). Otherwise a deterministic policy that never
    chooses FIRE stands still until the time limit after its first lost life."""

    def __init__(self, env: gym.Env, on_life_loss: bool) -> None:
        super().__init__(env)
        self.on_life_loss = on_life_loss
        self.lives = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.env.reset(**kwargs)
        obs, _, term, trunc, info = self.env.step(1)
        if term or trunc:
            self.env.reset(**kwargs)
        obs, _, term, trunc, info = self.env.step(2)
        if term or trunc:
            obs, info = self.env.reset(**kwargs)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, term, trunc, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        if self.on_life_loss and 0 < lives < self.lives and not (term or trunc):
            for a in (1, 2):
                obs, r, term, trunc, info = self.env.step(a)
                reward += r
                if term or trunc:
                    break
        self.lives = self.env.unwrapped.ale.lives()
        return obs, reward, term, trunc, info


def make_env(spec: EnvSpec, train: bool) -> gym.Env:
    """One env with the family's wrappers. ``train=False`` builds the evaluation env:
    same observation pipeline, raw rewards, no episodic life, FIRE after each life loss (where
    ``fire_on_reset``) and at most ``eval_max_frames`` frames per episode.

    ``RecordEpisodeStatistics`` is always the innermost wrapper, so ``info["episode"]`` holds
    the raw return of the full episode (for Atari: the whole game, all lives, unclipped
    score; its length ``l`` counts emulator frames, not agent steps)."""
    if spec.family == "minatar":
        return make_minatar(spec)
    if spec.family != "atari":
        return gym.wrappers.RecordEpisodeStatistics(gym.make(spec.id))
    import ale_py
    gym.register_envs(ale_py)
    a = spec.atari
    env = gym.wrappers.RecordEpisodeStatistics(gym.make(spec.id, **ale_kwargs(spec, train)))
    env = gym.wrappers.AtariPreprocessing(
        env, noop_max=a.get("noop_max", 30), frame_skip=a.get("frame_skip", 4),
        screen_size=a.get("screen_size", 84), terminal_on_life_loss=False, grayscale_obs=True,
        scale_obs=False)
    episodic_life = train and a.get("terminal_on_life_loss", True)
    if episodic_life:
        from stable_baselines3.common.atari_wrappers import EpisodicLifeEnv
        env = EpisodicLifeEnv(env)
    if a.get("fire_on_reset", False) and needs_fire(env):
        # above EpisodicLifeEnv, as in SB3's AtariWrapper: its life-loss "reset" fires too
        env = FireReset(env, on_life_loss=not episodic_life)
    if train and a.get("clip_reward", True):
        env = gym.wrappers.TransformReward(env, np.sign)
    return gym.wrappers.FrameStackObservation(env, a.get("frame_stack", 4))


# MinAtar (Young & Tian 2019): the paper's conventions, stated in envs.yaml and recorded in
# summary.json's eval block: sticky actions 0.1, difficulty ramping on, the full action set
# (6 actions, the `-v0` ids; `-v1` is the later minimal set), no frame stacking (the 10×10×n
# grid holds the motion trails), no reward clipping, no episodic life. The paper sets no
# episode limit; `max_episode_steps` bounds an episode (training and evaluation alike, a
# truncation that is bootstrapped) so that one evaluation cannot run forever.
MINATAR_DEFAULTS = {"sticky_action_prob": 0.1, "difficulty_ramping": True, "max_episode_steps": 10_000}


class MinAtarObservation(gym.ObservationWrapper):
    """MinAtar's (10, 10, n) bool grid → (n, 10, 10) uint8 in {0, 1}, channel-first as the CNNs
    expect. Box(0, 1): SB3 does not treat it as an 8-bit image (no ÷255, no transpose)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 1, (c, h, w), np.uint8)

    def observation(self, obs: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(obs.transpose(2, 0, 1), dtype=np.uint8)


def make_minatar(spec: EnvSpec) -> gym.Env:
    register_minatar()
    m = {**MINATAR_DEFAULTS, **spec.minatar}
    env = gym.make(spec.id, sticky_action_prob=m["sticky_action_prob"], difficulty_ramping=m["difficulty_ramping"],
                   max_episode_steps=m["max_episode_steps"])
    return MinAtarObservation(gym.wrappers.RecordEpisodeStatistics(env))


def eval_protocol(spec: EnvSpec) -> dict[str, Any]:
    """What ``summary.json``'s ``eval`` block records beyond freq and episodes (Atari: the
    episode cap in frames and whether FIRE is pressed on reset / after a life loss; MinAtar:
    its conventions)."""
    if spec.family == "minatar":
        return {"minatar": {**MINATAR_DEFAULTS, **spec.minatar}}
    if spec.family != "atari":
        return {}
    return {"max_frames": ale_kwargs(spec, train=False)["max_num_frames_per_episode"],
            "fire_on_reset": bool(spec.atari.get("fire_on_reset", False))}


def env_fns(spec: EnvSpec, n: int, train: bool = True) -> list[Callable[[], gym.Env]]:
    return [functools.partial(make_env, spec, train) for _ in range(n)]
