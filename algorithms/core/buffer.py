"""On-policy rollout storage and collection, shared by PPO, NPG and TRPO."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from algorithms.core.envs import VecEnv, action_clipper
from algorithms.core.fast import NumpyActor, torch_seed_for_numpy
from algorithms.core.gae import gae
from algorithms.core.nets import ActorCritic


class RolloutBuffer:
    """T steps × N envs of (s, a, log π_old(a|s), V(s), r, terminated, episode end, V(s')).

    Storage stays in host memory (the env loop writes NumPy views of it); the policy may live on
    ``device``: observations go there for its batched forwards, and ``flat`` hands the update its
    tensors there."""

    def __init__(self, T: int, env: VecEnv, device: torch.device | str = "cpu") -> None:
        self.T, self.N, self.env, self.device = T, env.n, env, torch.device(device)
        obs_space, act_space = env.single_observation_space, env.single_action_space
        obs_dtype = torch.uint8 if obs_space.dtype == np.uint8 else torch.float32
        self.obs = torch.zeros((T, self.N, *obs_space.shape), dtype=obs_dtype)
        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        self.actions = torch.zeros((T, self.N) if self.discrete else (T, self.N, *act_space.shape))
        self.clip = None if self.discrete else action_clipper(act_space)
        self.logp, self.values, self.rewards, self.next_values = (torch.zeros(T, self.N) for _ in range(4))
        self.terminated, self.episode_end = torch.zeros(T, self.N), torch.zeros(T, self.N)
        self._np_obs = self.obs.numpy()               # views: the loop writes into the tensors
        self._np_actions = self.actions.numpy()
        self._np_rewards, self._np_term, self._np_end = (
            x.numpy() for x in (self.rewards, self.terminated, self.episode_end))
        self._np_trunc = np.zeros((T, self.N), bool)   # the loop's truncations; episode_end is formed after it
        self._actor: NumpyActor | None = None

    def _sampler(self, policy: ActorCritic):
        """Per-step action sampler ``(t, obs) ↦ a``: the NumPy actor for MLPs (see core/fast.py),
        drawing the rollout's noise up front; torch otherwise."""
        if NumpyActor.supports(policy):
            if self._actor is None or self._actor.source is not policy:
                self._actor = NumpyActor.of(policy, 0)
            actor = self._actor
            actor.refresh()
            # re-seeded from torch's generator at every rollout: the checkpointed torch RNG
            # state then fixes the action stream, and a resumed run continues bit for bit
            actor.rng = np.random.default_rng(torch_seed_for_numpy())
            return actor.sampler(actor.noise(self.T, self.N))
        return lambda t, o: policy.dist(torch.as_tensor(o, device=self.device)).sample().cpu().numpy()

    @torch.inference_mode()
    def collect(self, policy: ActorCritic) -> None:
        """Run the current policy for T steps, then compute log π_old(a|s), V(s) and V(s')
        for the whole rollout in one batched forward. Continuous actions are clipped to the
        action bounds for the env only; the stored action is the sampled one."""
        env, sample = self.env, self._sampler(policy)
        truncated_at: list[tuple[int, int, np.ndarray]] = []
        obs = env.obs
        for t in range(self.T):
            self._np_obs[t] = obs
            a = sample(t, obs)
            self._np_actions[t] = a
            if self.clip is not None:
                a = self.clip(a)
            obs, r, term, trunc = env.step(a)
            self._np_rewards[t] = r
            self._np_term[t] = term
            self._np_trunc[t] = trunc
            if env.any_end:
                for i in np.flatnonzero(trunc & ~term):
                    truncated_at.append((t, int(i), env.final_obs[i].copy()))
        np.logical_or(self._np_term, self._np_trunc, out=self._np_end, casting="unsafe")   # e_t = d_t ∨ truncated
        dev = self.device
        flat_obs = self._batch(self.obs.reshape(self.T * self.N, *self.obs.shape[2:]), policy)
        dist, v = policy(flat_obs)
        flat_actions = self.actions.reshape(self.T * self.N, *self.actions.shape[2:]).to(dev)
        self.logp.copy_(dist.log_prob(flat_actions).reshape(self.T, self.N))
        self.values.copy_(v.reshape(self.T, self.N))
        self.next_values[:-1] = self.values[1:]
        self.next_values[-1].copy_(policy.value(self._batch(torch.as_tensor(obs), policy)))
        if truncated_at:   # time-limit truncation bootstraps with V(s_T) of the final observation
            finals = self._batch(torch.as_tensor(np.stack([o for _, _, o in truncated_at])), policy)
            v_final = policy.value(finals).cpu()
            for (t, i, _), v in zip(truncated_at, v_final):
                self.next_values[t, i] = v

    def _batch(self, obs: torch.Tensor, policy: ActorCritic) -> torch.Tensor:
        """Observations for a batched forward: on the policy's device; float ones in its dtype."""
        dtype = policy.v.weight.dtype if obs.is_floating_point() else obs.dtype
        return obs.to(self.device, dtype)

    def advantages(self, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
        return gae(self.rewards, self.values, self.next_values, self.terminated, self.episode_end, gamma, lam)

    def flat(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """(T, N, …) → (T·N, …), on the policy's device."""
        return [x.reshape(self.T * self.N, *x.shape[2:]).to(self.device) for x in tensors]


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    """1 − Var[y − ŷ] / Var[y] (nan when Var[y] = 0)."""
    var_y = target.var()
    return float("nan") if var_y == 0 else float(1 - (target - pred).var() / var_y)
