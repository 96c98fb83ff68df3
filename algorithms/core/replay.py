"""Trajectory replay memory for ACER (Wang et al. 2017; seed §4.5.5).

ACER replays whole k-step trajectories, not single transitions: Retrace needs consecutive
steps, and the importance weights ρ_t = π(a_t|s_t) / μ(a_t|s_t) need the *behaviour*
statistics μ(·|s_t) of the policy that acted (a Categorical's log-probabilities, or a
Gaussian's mean and log σ), stored with every step.

A slot holds one on-policy segment of ``T`` steps for each of the ``N`` envs: the
observations s_0 … s_T (s_T to bootstrap), actions, rewards, ``terminated``, ``episode_end``
(terminated or truncated), the behaviour statistics, and the final observation of every
episode truncated by a time limit inside the segment (its V(s_T) is bootstrapped; sparse).
Slots are overwritten FIFO. ``sample`` draws one trajectory per env, env b's from a slot drawn
uniformly, as OpenAI Baselines' ACER buffer (baselines/acer/buffer.py, commit ea25b9e, lines
85-87: ``idx = np.random.randint(0, self.num_in_buffer, nenv)``, ``envx = np.arange(nenv)``).

Observations and rewards are stored *raw* and normalised when read (``Trajectory.from_numpy``
with a ``normalizer``, e.g. the VecEnv): s ↦ normalize_obs(s), r ↦ normalize_reward(r) with the
statistics current at sampling time, as SB3's ``ReplayBuffer.sample(batch, env=VecNormalize)``.
uint8 frames are never normalised.

Image observations (``(S, H, W)`` uint8 frame stacks, as gymnasium's FrameStackObservation
returns them) are stored as single frames: the full stack of s_0, then only the newest
frame of s_1 … s_T, so a slot costs ``S + T`` frames instead of ``S·(T + 1)``. A step whose
stack is not the previous one shifted by a frame is an episode start; FrameStackObservation
pads it by repeating the first frame (``padding_type="reset"``), so such a stack is "all
frames equal" and is marked, and reconstruction replaces the frames before the latest start
by that start's frame. ``add`` checks that every stack is one of the two cases, so the
reconstruction is exact (tested) or ``add`` raises.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from algorithms.core.nets import is_image_space


class Normalizer(Protocol):
    """What normalises raw data at use time (``VecEnv``): current statistics, no update."""

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray: ...

    def normalize_reward(self, reward: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass
class Trajectory:
    """``T`` steps of ``B`` trajectories; time first. ``final_*``: truncated episode ends."""

    obs: torch.Tensor  # (T + 1, B, *obs_shape)
    actions: torch.Tensor  # (T, B) long, or (T, B, D) float
    rewards: torch.Tensor  # (T, B)
    terminated: torch.Tensor  # (T, B) float: no bootstrap after this step
    episode_end: torch.Tensor  # (T, B) float: terminated or truncated
    stats: dict[str, torch.Tensor]  # behaviour statistics μ(·|s_t), each (T, B, *shape)
    final_t: torch.Tensor  # (F,) long: step of each time-limit truncation
    final_b: torch.Tensor  # (F,) long: its trajectory
    final_obs: torch.Tensor  # (F, *obs_shape): the observation that ended it

    @property
    def T(self) -> int:
        return self.rewards.shape[0]

    def to(self, device: torch.device) -> Trajectory:
        """The same batch with every tensor on ``device`` (itself when they are there already)."""
        if self.rewards.device == torch.device(device):
            return self
        mv = lambda x: x.to(device, non_blocking=True)  # noqa: E731
        return Trajectory(obs=mv(self.obs), actions=mv(self.actions), rewards=mv(self.rewards),
                          terminated=mv(self.terminated), episode_end=mv(self.episode_end),
                          stats={k: mv(v) for k, v in self.stats.items()}, final_t=mv(self.final_t),
                          final_b=mv(self.final_b), final_obs=mv(self.final_obs))

    @classmethod
    def from_numpy(
        cls,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        episode_end: np.ndarray,
        stats: dict[str, np.ndarray],
        finals: tuple[np.ndarray, np.ndarray, np.ndarray],
        normalizer: Normalizer | None = None,
    ) -> Trajectory:
        """From time-first raw arrays; ``finals`` = (steps, trajectories, observations) of the
        truncations. With a ``normalizer``, the observations s_0 … s_T and the finals become
        ``normalizer.normalize_obs(s)`` (not for uint8 frames) and the rewards
        ``normalizer.normalize_reward(r)``, with its statistics as they are now."""
        if normalizer is not None:
            if np.asarray(obs).dtype != np.uint8:
                obs = normalizer.normalize_obs(np.asarray(obs))
                finals = (finals[0], finals[1], normalizer.normalize_obs(np.asarray(finals[2])))
            rewards = normalizer.normalize_reward(np.asarray(rewards))

        def t(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x))

        return cls(obs=t(obs), actions=t(actions), rewards=t(rewards), terminated=t(terminated).float(),
                   episode_end=t(episode_end).float(), stats={k: t(v) for k, v in stats.items()},
                   final_t=t(finals[0]).long(), final_b=t(finals[1]).long(), final_obs=t(finals[2]))


class ReplayMemory:
    """FIFO memory of ``capacity // (T·N)`` slots of ``T`` steps × ``N`` envs."""

    def __init__(self, T: int, N: int, obs_space: gym.Space, action_space: gym.Space, capacity: int,
                 stat_shapes: dict[str, tuple[int, ...]], frame_stacked: bool = True) -> None:
        self.T, self.N = T, N
        self.n_slots = max(1, capacity // (T * N))
        C = self.n_slots
        # uint8 images are either frame stacks (Atari; stored as single frames) or whole grids
        # (MinAtar, ``frame_stacked=False``; stored as they are, uint8)
        self.image = is_image_space(obs_space) and frame_stacked
        self.obs_shape = tuple(obs_space.shape)
        self.obs_dtype = np.uint8 if is_image_space(obs_space) else np.float32
        # np.zeros is calloc: pages cost memory only once written.
        if self.image:
            self.S = self.obs_shape[0]
            self.frames = np.zeros((C, N, self.S + T, *self.obs_shape[1:]), np.uint8)
            self.starts = np.zeros((C, N, T + 1), bool)  # s_t is an episode start (t ≥ 1)
        else:
            self.obs = np.zeros((C, N, T + 1, *self.obs_shape), self.obs_dtype)  # raw s_t
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.actions = np.zeros(
            (C, N, T) if self.discrete else (C, N, T, *action_space.shape),
            np.int64 if self.discrete else np.float32,
        )
        self.rewards = np.zeros((C, N, T), np.float32)  # raw r_t
        self.terminated = np.zeros((C, N, T), bool)
        self.episode_end = np.zeros((C, N, T), bool)
        self.stats = {k: np.zeros((C, N, T, *s), np.float32) for k, s in stat_shapes.items()}
        self.finals: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # slot → (t, n, obs)
        self.pos, self.size = 0, 0

    # --- bookkeeping --------------------------------------------------------------------
    @property
    def steps(self) -> int:
        """Transitions held (all envs)."""
        return self.size * self.T * self.N

    def _arrays(self) -> dict[str, np.ndarray]:
        out = {
            "actions": self.actions,
            "rewards": self.rewards,
            "terminated": self.terminated,
            "episode_end": self.episode_end,
            **{f"stat/{k}": v for k, v in self.stats.items()},
        }
        if self.image:
            out.update(frames=self.frames, starts=self.starts)
        else:
            out["obs"] = self.obs
        return out

    def nbytes(self) -> int:
        """Bytes allocated for a full memory (sparse truncation finals excluded)."""
        return sum(a.nbytes for a in self._arrays().values())

    def bytes_per_transition(self) -> float:
        return self.nbytes() / (self.n_slots * self.T * self.N)

    def memory_per_million(self) -> float:
        """GB (1e9 bytes) that one million stored transitions cost."""
        return self.bytes_per_transition() * 1e6 / 1e9

    # --- writing ------------------------------------------------------------------------
    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        episode_end: np.ndarray,
        stats: dict[str, np.ndarray],
        finals: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """One segment, time first: ``obs`` (T + 1, N, …), the others (T, N, …);
        ``finals`` = (t, n, final observations) of the time-limit truncations, if any."""
        i = self.pos
        obs = np.asarray(obs)
        if self.image:
            S = self.S
            cur, prev = obs[1:], obs[:-1]
            start = (cur[:, :, :-1] == cur[:, :, -1:]).reshape(*cur.shape[:2], -1).all(-1)  # (T, N)
            shifted = (cur[:, :, :-1] == prev[:, :, 1:]).reshape(*cur.shape[:2], -1).all(-1)
            if not (start | shifted).all():
                raise ValueError(
                    "frame stacks are neither the previous stack shifted by one frame nor "
                    "reset-padded (all frames equal); cannot store them as single frames"
                )
            self.frames[i, :, :S] = obs[0]
            self.frames[i, :, S:] = np.swapaxes(cur[:, :, -1], 0, 1)
            self.starts[i, :, 0] = False
            self.starts[i, :, 1:] = start.T
        else:
            self.obs[i] = np.swapaxes(obs, 0, 1)
        self.actions[i] = np.swapaxes(np.asarray(actions), 0, 1)
        self.rewards[i] = np.asarray(rewards).T
        self.terminated[i] = np.asarray(terminated).T
        self.episode_end[i] = np.asarray(episode_end).T
        for k, v in stats.items():
            self.stats[k][i] = np.swapaxes(np.asarray(v), 0, 1)
        if finals is not None and len(finals[0]):
            self.finals[i] = (
                np.asarray(finals[0]),
                np.asarray(finals[1]),
                np.array(finals[2], self.obs_dtype),
            )
        else:
            self.finals.pop(i, None)
        self.pos = (i + 1) % self.n_slots
        self.size = min(self.size + 1, self.n_slots)

    # --- reading ------------------------------------------------------------------------
    def _stacks(self, slots: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """(B, T + 1, S, H, W) frame stacks rebuilt from single frames (vectorised gather)."""
        S, T = self.S, self.T
        t = np.arange(T + 1)
        starts = self.starts[slots, envs]  # (B, T + 1)
        last_start = np.maximum.accumulate(np.where(starts, t, 0), axis=1)  # latest start ≤ t (0: none)
        lower = np.where(last_start > 0, last_start + S - 1, 0)  # its frame's position
        idx = np.maximum(t[None, :, None] + np.arange(S)[None, None, :], lower[:, :, None])  # (B, T + 1, S)
        frames = self.frames[slots, envs]  # (B, S + T, H, W)
        return np.take_along_axis(frames, idx.reshape(len(slots), -1)[:, :, None, None], axis=1).reshape(
            len(slots), T + 1, S, *frames.shape[2:]
        )

    def get(self, slots: np.ndarray, envs: np.ndarray, normalizer: Normalizer | None = None) -> Trajectory:
        """The trajectories of env ``envs[b]`` in slot ``slots[b]``, as a (T, B) batch; raw, or
        normalised by ``normalizer`` (see ``Trajectory.from_numpy``)."""
        slots, envs = np.asarray(slots), np.asarray(envs)
        obs = self._stacks(slots, envs) if self.image else self.obs[slots, envs]
        ft, fb, fo = [], [], []
        for b, (s, n) in enumerate(zip(slots.tolist(), envs.tolist())):
            if s in self.finals:
                t_idx, n_idx, o = self.finals[s]
                m = n_idx == n
                if m.any():
                    ft.append(t_idx[m])
                    fb.append(np.full(int(m.sum()), b))
                    fo.append(o[m])
        none = np.zeros(0, np.int64)
        finals = (np.concatenate(ft) if ft else none, np.concatenate(fb) if fb else none,
                  np.concatenate(fo) if fo else np.zeros((0, *self.obs_shape), self.obs_dtype))
        tm = lambda x: np.swapaxes(x, 0, 1)  # noqa: E731  (B, T, …) → (T, B, …)
        return Trajectory.from_numpy(tm(obs), tm(self.actions[slots, envs]), tm(self.rewards[slots, envs]),
                                     tm(self.terminated[slots, envs]), tm(self.episode_end[slots, envs]),
                                     {k: tm(v[slots, envs]) for k, v in self.stats.items()}, finals,
                                     normalizer)

    def sample(self, rng: np.random.Generator, normalizer: Normalizer | None = None) -> Trajectory:
        """A (T, N) batch: for every env b = 0 … N − 1 its trajectory in a slot drawn uniformly from
        the filled ones (independently per env), as Baselines' ``Buffer.get``; normalised with
        ``normalizer``'s current statistics when given."""
        if self.size == 0:
            raise ValueError("sampling from an empty replay memory")
        return self.get(rng.integers(0, self.size, self.N), np.arange(self.N), normalizer)

    # --- checkpointing ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Filled slots only, as tensors (loadable with ``torch.load(weights_only=True)``)."""
        n = self.size
        t = lambda x: torch.from_numpy(np.ascontiguousarray(x))  # noqa: E731
        return {"pos": self.pos, "size": n, "arrays": {k: t(v[:n]) for k, v in self._arrays().items()},
                "finals": {int(s): tuple(t(x) for x in f) for s, f in self.finals.items()}}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        n = s["size"]
        if n > self.n_slots:
            raise ValueError(f"checkpoint holds {n} slots; this memory has {self.n_slots}")
        for k, v in self._arrays().items():
            v[:n] = s["arrays"][k].numpy()
        self.pos, self.size = s["pos"], n
        self.finals = {int(k): tuple(x.numpy() for x in f) for k, f in s["finals"].items()}
