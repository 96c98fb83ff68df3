"""Vectorised environments with episode statistics and VecNormalize-style normalisation.

``VecEnv`` steps ``n`` gymnasium envs in lock-step and auto-resets them *in the same step*:
on an episode end the returned observation is the first of the next episode, and the
final observation of the finished one is kept in ``final_obs`` so that time-limit
truncation can bootstrap with V(s_T). This is gymnasium's SAME_STEP autoreset semantics
without the per-step ``info`` dictionary merging of ``gymnasium.vector``, which costs more
than a CartPole step.

Episode returns are the *raw* rewards (before any normalisation or clipping), read from
``gymnasium.wrappers.RecordEpisodeStatistics`` inside each sub-env: the same monitor the
Stable-Baselines3 reference runs use.
"""
from __future__ import annotations

import copy
import pickle
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

# Attributes that are rebuilt by the constructor or are handles to native simulators.
_NOT_STATE = {"env", "ale", "model", "data", "mujoco_renderer", "spec", "action_space", "observation_space",
              "_ezpickle_args", "_ezpickle_kwargs", "metadata", "_cached_spec"}


def get_env_state(env: gym.Env) -> list[dict[str, Any]]:
    """A picklable snapshot of an env and every wrapper around it: each layer's Python
    state, plus the simulator state (MuJoCo's integration state, the ALE's state with its
    RNG). Restoring it into an env built the same way continues bit for bit."""
    layers = []
    e: Any = env
    while True:
        state: dict[str, Any] = {}
        for k, v in vars(e).items():
            if k in _NOT_STATE:
                continue
            try:
                state[k] = pickle.loads(pickle.dumps(v))
            except Exception:  # noqa: BLE001 - a handle we cannot and need not save
                continue
        if hasattr(e, "ale"):
            state["__ale__"] = e.ale.cloneState(include_rng=True)
        if hasattr(e, "data") and hasattr(e, "model"):
            import mujoco
            spec = mujoco.mjtState.mjSTATE_INTEGRATION
            buf = np.empty(mujoco.mj_stateSize(e.model, spec))
            mujoco.mj_getState(e.model, e.data, buf, spec)
            state["__mujoco__"] = buf
        layers.append(state)
        if not hasattr(e, "env"):
            return layers
        e = e.env


def set_env_state(env: gym.Env, layers: list[dict[str, Any]]) -> None:
    e: Any = env
    for state in layers:
        for k, v in state.items():
            if k == "__ale__":
                e.ale.restoreState(v)
            elif k == "__mujoco__":
                import mujoco
                mujoco.mj_setState(e.model, e.data, v, mujoco.mjtState.mjSTATE_INTEGRATION)
                mujoco.mj_forward(e.model, e.data)
            else:
                setattr(e, k, copy.deepcopy(v))
        e = getattr(e, "env", None)


def batch_mean_var(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x.mean(0), x.var(0)``: for float64, the very ufunc calls numpy's ``_mean`` and ``_var`` make
    (the same bits, tests/test_fast.py) without their Python wrappers, which cost more than the
    arithmetic on a batch of a few envs' observations, once per env step."""
    if x.dtype != np.float64:
        return x.mean(0), x.var(0)
    n = np.intp(x.shape[0])
    mean = np.add.reduce(x, axis=0) / n
    d = x - np.add.reduce(x, axis=0, keepdims=True) / n
    np.multiply(d, d, out=d)
    return mean, np.add.reduce(d, axis=0) / n


def action_clipper(space: gym.spaces.Box) -> Callable[[np.ndarray], np.ndarray]:
    """a ↦ a clipped to the Box's bounds, for the env (rollouts store the sampled action itself).
    np.clip's values by its two ufuncs, whose Python wrapper costs several times them; the bounds get
    a batch axis, so one env's (1, d) action clips without NumPy's broadcasting set-up (1.4 → 0.5 µs)."""
    low, high = space.low[None], space.high[None]
    return lambda a: np.minimum(np.maximum(a, low), high)


class RunningMeanStd:
    """Running mean and variance with the parallel (Chan et al.) update."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = epsilon

    def update(self, x: np.ndarray) -> None:
        (b_mean, b_var), b_count = batch_mean_var(x), x.shape[0]
        delta = b_mean - self.mean
        tot = self.count + b_count
        self.mean = self.mean + delta * b_count / tot
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / tot
        self.var = m2 / tot
        self.count = tot

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.mean, self.var, self.count = s["mean"].copy(), s["var"].copy(), s["count"]


class VecEnv:
    """``n`` envs stepped in lock-step, SAME_STEP autoreset, optional normalisation.

    ``step`` returns ``(obs, reward, terminated, truncated)`` as arrays; after it,
    ``final_obs`` holds, for every env, the observation that followed the action (the
    terminal one where an episode ended) — already normalised like ``obs``. The same step's
    raw data: ``raw_obs`` (the returned observations), ``raw_final_obs``, ``raw_rewards``.

    Normalisation is SB3's ``VecNormalize`` (stable_baselines3/common/vec_env/vec_normalize.py,
    ``step_wait``): obs_rms is updated with the observations that ``step`` *returns* (the first
    of the next episode after an episode end, never the terminal one), then both the returned
    and the final observations are normalised with the updated statistics,
    s ↦ clip((s − m)/√(v + 1e-8), ±clip_obs); the discounted return R ← γR + r updates ret_rms
    and r ↦ clip(r/√(v_ret + 1e-8), ±clip_reward) (``normalize_reward``, no update).
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        seed: int,
        norm_obs: bool = False,
        norm_reward: bool = False,
        gamma: float = 0.99,
        clip_obs: float = 10.0,
        clip_reward: float = 10.0,
    ) -> None:
        self.envs = [fn() for fn in env_fns]
        self.n = len(self.envs)
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.norm_obs, self.norm_reward = norm_obs, norm_reward
        self.gamma, self.clip_obs, self.clip_reward = gamma, clip_obs, clip_reward
        self.obs_rms = RunningMeanStd(self.single_observation_space.shape)
        self.ret_rms = RunningMeanStd(())
        self._ret = np.zeros(self.n)
        self._episode_returns: list[float] = []
        self._episode_lengths: list[int] = []
        self.training = True
        raw = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(self.envs)])
        for i, e in enumerate(self.envs):
            e.action_space.seed(seed + i)
        self._raw_obs = raw
        if self.norm_obs:
            self.obs_rms.update(raw)
        self.obs = self.normalize_obs(raw)
        self.final_obs = self.obs.copy()
        self.raw_final_obs = raw.copy()
        self.raw_rewards = np.zeros(self.n, np.float64)
        self.any_end = False

    @property
    def raw_obs(self) -> np.ndarray:
        """The current observations before normalisation (those ``obs`` normalises)."""
        return self._raw_obs

    # --- normalisation ---------------------------------------------------------------
    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        if not self.norm_obs:
            return obs.astype(np.float32) if obs.dtype == np.float64 else obs
        z = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + 1e-8)
        return np.minimum(np.maximum(z, -self.clip_obs), self.clip_obs).astype(np.float32)   # np.clip, less its wrapper

    def normalize_reward(self, r: np.ndarray) -> np.ndarray:
        """clip(r / √(v_ret + 1e-8), ±clip_reward) with the current ret_rms (no update), float32;
        SB3's ``VecNormalize.normalize_reward``."""
        if not self.norm_reward:
            return np.asarray(r).astype(np.float32)
        z = r / np.sqrt(self.ret_rms.var + 1e-8)
        return np.minimum(np.maximum(z, -self.clip_reward), self.clip_reward).astype(np.float32)

    def _update_ret(self, r: np.ndarray, done: np.ndarray) -> None:
        """R ← γR + r, ret_rms updated while training, R reset where an episode ended (norm_reward only)."""
        self._ret = self._ret * self.gamma + r
        if self.training:
            self.ret_rms.update(self._ret)
        self._ret[done] = 0.0

    # --- stepping --------------------------------------------------------------------
    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = self.n
        raw_next = np.empty_like(self._raw_obs)
        raw_final = np.empty_like(self._raw_obs)
        rew = np.empty(n, np.float64)
        term = np.empty(n, bool)
        trunc = np.empty(n, bool)
        any_end = False
        for i, env in enumerate(self.envs):
            o, r, te, tr, info = env.step(actions[i])
            rew[i], term[i], trunc[i] = r, te, tr
            raw_final[i] = o
            if te or tr:
                any_end = True
                ep = info.get("episode")
                if ep is not None:
                    self._episode_returns.append(float(ep["r"]))
                    self._episode_lengths.append(int(ep["l"]))
                o, _ = env.reset()
            raw_next[i] = o
        if self.norm_obs and self.training:
            self.obs_rms.update(raw_next)  # the returned observations, as VecNormalize
        self._raw_obs, self.raw_final_obs, self.raw_rewards = raw_next, raw_final, rew
        self.obs = self.normalize_obs(raw_next)
        # where no episode ended the final observations are the returned ones: the same array, not a
        # second normalisation of equal values (read-only for callers, who copy what they keep)
        self.final_obs = self.normalize_obs(raw_final) if any_end else self.obs
        self.any_end = any_end   # did an episode end in this step (for callers: no array reduction)
        if self.norm_reward:
            self._update_ret(rew, term | trunc)
        return self.obs, self.normalize_reward(rew), term, trunc

    def pop_episodes(self) -> tuple[list[float], list[int]]:
        """Raw returns and lengths of the training episodes finished since the last call."""
        r, l = self._episode_returns, self._episode_lengths
        self._episode_returns, self._episode_lengths = [], []
        return r, l

    # --- checkpointing ----------------------------------------------------------------
    def state_dict(self, include_envs: bool = False) -> dict[str, Any]:
        """Normalisation statistics; with ``include_envs`` also every sub-env's state and
        the current observations, for an exact resume (checkpoints)."""
        s: dict[str, Any] = {"obs_rms": self.obs_rms.state_dict(), "ret_rms": self.ret_rms.state_dict(),
                             "ret": self._ret.copy()}
        if include_envs:
            s.update(envs=[get_env_state(e) for e in self.envs], raw_obs=self._raw_obs.copy(), obs=self.obs.copy(),
                     final_obs=self.final_obs.copy(),
                     episodes=(list(self._episode_returns), list(self._episode_lengths)))
        return s

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.obs_rms.load_state_dict(s["obs_rms"])
        self.ret_rms.load_state_dict(s["ret_rms"])
        self._ret = s["ret"].copy()
        if "envs" in s:
            for e, layers in zip(self.envs, s["envs"], strict=True):
                set_env_state(e, layers)
            self._raw_obs, self.obs, self.final_obs = s["raw_obs"].copy(), s["obs"].copy(), s["final_obs"].copy()
            self._episode_returns, self._episode_lengths = (list(x) for x in s["episodes"])

    def close(self) -> None:
        for e in self.envs:
            e.close()
