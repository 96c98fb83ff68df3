"""Stable-Baselines3 reference runs (PPO, A2C; TRPO from sb3-contrib) behind our runner.

They are ``Algorithm`` subclasses like ours, so a reference run goes through the same
pipeline: the same env constructor (``run.env_fns``: same wrappers, same innermost
``RecordEpisodeStatistics`` for the raw training returns), the same evaluation protocol
(the runner's ``Evaluator`` calls ``predict``), the same progress/eval/summary files.

* Hyper-parameters: each ``Config`` uses SB3's names and SB3's documented defaults
  (tests/test_sb3_ref.py checks them against the installed SB3 signatures). Learning-rate
  and clip-range schedules are ``constant`` or ``linear`` (SB3's ``lin_<x>``: x × remaining
  progress). gSDE is not exposed: our algorithms have no counterpart.
* Policies: ``net_arch`` hidden layers for separate actor and critic MLPs (SB3's
  ``dict(pi=..., vf=...)``), ``activation`` tanh/relu, orthogonal init, state-independent
  log σ starting at ``log_std_init`` — the same as ``algorithms.core.nets.ActorCritic``. On
  image observations (Atari (4, 84, 84) uint8, already channel-first: no
  ``VecTransposeImage``) SB3's Nature CNN shared by actor and critic, no hidden layers.
* Envs: ``DummyVecEnv(run.env_fns(n_envs))``, wrapped in ``VecNormalize`` when
  ``norm_obs``/``norm_reward`` (same clip 10/10, ε 1e-8 and γ as our ``VecEnv``). SB3 seeds
  its sub-envs with ``run.seed + i`` (ours derive the seed from ``run.seed``); the
  evaluation envs are the runner's, identical for every algorithm.
* Reporting: ``_RunCallback`` collects the raw returns of finished training episodes from
  ``infos[i]["episode"]`` and calls ``run.log_update(num_timesteps, diagnostics,
  episode_returns)`` once per policy update, *after* the update (SB3 has no hook there:
  the callback logs the pending update at the next rollout start, and the last one at
  training end). Logging at rollout end instead would evaluate a policy one update behind
  its step count, and the final update would never be evaluated. Diagnostics are read from
  SB3's logger and renamed to ours (``pg_loss``, ``value_loss``, ``entropy`` (+H, SB3 logs
  −H), ``approx_kl``, ``clip_fraction``, ``explained_variance``, ``learning_rate``, …).
  A ``Divergence`` raised by the runner inside the callback propagates out of SB3's learn.
* ``state_dict``: SB3's own ``save()`` zip (parameters, optimiser, schedules, counters) +
  the ``VecNormalize`` statistics. Resuming is not bit-exact: env states, the RNG states and
  the episode in progress are not restored (SB3 resets the envs on ``learn``).
"""
from __future__ import annotations

import dataclasses
import io
import math
from typing import Any, ClassVar

import numpy as np
import torch

from algorithms.base import Algorithm, BaseConfig, ConfigError
from algorithms.core.nets import is_image_space

SCHEDULES = ("constant", "linear")

# SB3 logger key (without "train/") → our diagnostic name (ours where the concept is shared).
_RENAME = {
    "policy_gradient_loss": "pg_loss",
    "policy_loss": "pg_loss",
    "value_loss": "value_loss",
    "loss": "loss",
    "approx_kl": "approx_kl",                     # PPO: SB3's is its last epoch's mean, ours the update's
    "clip_fraction": "clip_fraction",
    "clip_range": "clip_range",
    "clip_range_vf": "clip_range_vf",
    "explained_variance": "explained_variance",
    "learning_rate": "learning_rate",
    "std": "std",
    "kl_divergence_loss": "kl",                   # TRPO: mean KL(π_new ‖ π_old) of the accepted step (× d, SB3TRPO)
    "policy_objective": "policy_objective",       # TRPO: surrogate at the accepted step
    "is_line_search_success": "line_search_success",
}


class LinearSchedule:
    """SB3's ``lin_<x>``: ``x × progress_remaining`` (1 → 0 over the run). A class, not a
    lambda, so that ``save()`` pickles it plainly."""

    def __init__(self, initial: float) -> None:
        self.initial = float(initial)

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * progress_remaining


def _schedule(value: float, kind: str) -> float | LinearSchedule:
    return LinearSchedule(value) if kind == "linear" else float(value)


@dataclasses.dataclass
class SB3Config(BaseConfig):
    """Shared by the three references (BaseConfig: n_envs, gamma, net_arch, activation,
    norm_obs, norm_reward)."""

    learning_rate: float = 3e-4
    lr_schedule: str = "constant"          # "constant" or "linear" (SB3's lin_<lr>)
    n_steps: int = 2048
    gae_lambda: float = 0.95
    normalize_advantage: bool = True
    log_std_init: float = 0.0
    clip_obs: float = 10.0                 # VecNormalize
    clip_reward: float = 10.0              # VecNormalize

    def validate(self) -> None:
        if self.lr_schedule not in SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        if self.activation not in ("tanh", "relu"):
            raise ConfigError(f"activation must be 'tanh' or 'relu', got {self.activation!r}")
        if self.n_envs < 1 or self.n_steps < 1:
            raise ConfigError("n_envs and n_steps must be >= 1")


@dataclasses.dataclass
class SB3PPOConfig(SB3Config):
    """SB3 PPO defaults (stable_baselines3.PPO), the same names and values as our PPOConfig."""

    batch_size: int = 64
    n_epochs: int = 10
    clip_range: float = 0.2
    clip_range_schedule: str = "constant"  # SB3's lin_<clip_range>
    clip_range_vf: float | None = None
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None

    def validate(self) -> None:
        super().validate()
        if self.clip_range_schedule not in SCHEDULES:
            raise ConfigError(f"clip_range_schedule must be one of {SCHEDULES}, "
                              f"got {self.clip_range_schedule!r}")
        if self.batch_size > self.n_steps * self.n_envs:
            raise ConfigError(f"batch_size={self.batch_size} exceeds "
                              f"n_steps*n_envs={self.n_steps * self.n_envs}")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be > 1 (SB3 normalises advantages per minibatch)")
        if not self.clip_range > 0:
            raise ConfigError("clip_range must be > 0")


@dataclasses.dataclass
class SB3TRPOConfig(SB3Config):
    """sb3-contrib TRPO defaults. ``learning_rate`` is the critic's (Adam); ``target_kl`` is
    the trust-region radius δ of the KL constraint."""

    learning_rate: float = 1e-3
    batch_size: int = 128
    cg_max_steps: int = 15
    cg_damping: float = 0.1
    line_search_shrinking_factor: float = 0.8
    line_search_max_iter: int = 10
    n_critic_updates: int = 10
    target_kl: float = 0.01
    sub_sampling_factor: int = 1
    kl_action_dims: str = "sum"            # "sum": the paper's per-state KL; "mean": as shipped

    def validate(self) -> None:
        super().validate()
        if self.kl_action_dims not in ("sum", "mean"):
            raise ConfigError(f"kl_action_dims must be 'sum' or 'mean', got {self.kl_action_dims!r}")
        if not self.target_kl > 0:
            raise ConfigError("target_kl must be > 0")
        if not 0 < self.line_search_shrinking_factor < 1:
            raise ConfigError("line_search_shrinking_factor must be in (0, 1)")
        if self.batch_size > self.n_steps * self.n_envs:
            raise ConfigError(f"batch_size={self.batch_size} exceeds "
                              f"n_steps*n_envs={self.n_steps * self.n_envs}")


@dataclasses.dataclass
class SB3A2CConfig(SB3Config):
    """SB3 A2C defaults: RMSprop (α 0.99, ε ``rms_prop_eps``), 5-step rollouts, no GAE
    (λ = 1), no advantage normalisation."""

    learning_rate: float = 7e-4
    n_steps: int = 5
    gae_lambda: float = 1.0
    normalize_advantage: bool = False
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    rms_prop_eps: float = 1e-5
    use_rms_prop: bool = True
    rmsprop_tf_like: bool = False          # SB3's RMSpropTFLike (rl-zoo's Atari setting)


def _flat_diagnostics(name_to_value: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, v in name_to_value.items():
        if not key.startswith("train/"):
            continue
        k = key[len("train/"):]
        if k == "n_updates":
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if k == "entropy_loss":
            out["entropy"] = -x                   # SB3 logs −H; ours is +H
        else:
            out[_RENAME.get(k, k)] = x
    return out


def _make_callback(algo: SB3Algorithm):
    from stable_baselines3.common.callbacks import BaseCallback

    class _RunCallback(BaseCallback):
        """Training returns from the innermost ``RecordEpisodeStatistics``; one
        ``run.log_update`` per policy update, after it."""

        def __init__(self) -> None:
            super().__init__(verbose=0)
            self.returns: list[float] = []
            self.pending: int | None = None

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                ep = info.get("episode")
                if ep is not None:
                    self.returns.append(float(ep["r"]))
            return True

        def _on_rollout_end(self) -> None:
            self.pending = self.num_timesteps     # SB3's train() on this rollout comes next

        def _on_rollout_start(self) -> None:      # the previous rollout's train() is done
            self.flush()

        def _on_training_end(self) -> None:
            self.flush()

        def flush(self) -> None:
            if self.pending is None:
                return
            step, self.pending = self.pending, None
            returns, self.returns = self.returns, []
            algo.run.log_update(step, algo.diagnostics(), episode_returns=returns)

    return _RunCallback()


class SB3Algorithm(Algorithm):
    """Common plumbing; subclasses give the SB3 class and its keyword arguments."""

    sb3_class: ClassVar[str]   # "module:Class"

    def __init__(self, cfg: SB3Config, run) -> None:
        super().__init__(cfg, run)
        torch.set_num_threads(1)
        from stable_baselines3.common.logger import Logger
        from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

        venv = DummyVecEnv(run.env_fns(cfg.n_envs))
        if cfg.norm_obs or cfg.norm_reward:
            venv = VecNormalize(venv, training=True, norm_obs=cfg.norm_obs, norm_reward=cfg.norm_reward,
                                clip_obs=cfg.clip_obs, clip_reward=cfg.clip_reward, gamma=cfg.gamma,
                                epsilon=1e-8)
        self.venv = venv
        self.image = is_image_space(venv.observation_space)
        cls = self._sb3_cls()
        self.model = cls("CnnPolicy" if self.image else "MlpPolicy", venv, seed=run.seed,
                         device=str(run.device), verbose=0, policy_kwargs=self._policy_kwargs(),
                         **self._kwargs())
        self.model.set_logger(Logger(folder=None, output_formats=[]))   # no stdout, no temp dirs
        self.policy = self.model.policy     # an nn.Module attribute: the runner's divergence check sees it
        self._resumed = False

    # --- construction ---------------------------------------------------------------
    def _sb3_cls(self):
        import importlib
        module, name = self.sb3_class.split(":")
        return getattr(importlib.import_module(module), name)

    def _policy_kwargs(self) -> dict[str, Any]:
        cfg = self.cfg
        act = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[cfg.activation]
        kw: dict[str, Any] = {"activation_fn": act, "ortho_init": True}
        if self.image:
            kw["net_arch"] = []                    # CNN trunk → heads, as ours
            if cfg.cnn == "minatar":
                from algorithms.core.sb3_extractors import MinAtarExtractor
                kw["features_extractor_class"] = MinAtarExtractor
        else:
            kw["net_arch"] = {"pi": list(cfg.net_arch), "vf": list(cfg.net_arch)}
        import gymnasium as gym
        if isinstance(self.venv.action_space, gym.spaces.Box):
            kw["log_std_init"] = cfg.log_std_init
        return kw

    def _kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    # --- the Algorithm interface -------------------------------------------------------
    def learn(self) -> None:
        remaining = self.run.total_steps - (self.model.num_timesteps if self._resumed else 0)
        if remaining <= 0:
            return
        self.model.learn(total_timesteps=remaining, callback=_make_callback(self), log_interval=None,
                         reset_num_timesteps=not self._resumed, progress_bar=False)

    def predict(self, obs: np.ndarray) -> np.ndarray:
        from stable_baselines3.common.vec_env import VecNormalize
        if isinstance(self.venv, VecNormalize):
            obs = self.venv.normalize_obs(obs)     # current statistics, not updated
        actions, _ = self.model.predict(obs, deterministic=True)
        return actions

    def predict_stochastic(self, obs: np.ndarray) -> np.ndarray:
        from stable_baselines3.common.vec_env import VecNormalize
        if isinstance(self.venv, VecNormalize):
            obs = self.venv.normalize_obs(obs)
        actions, _ = self.model.predict(obs, deterministic=False)
        return actions

    def diagnostics(self) -> dict[str, float]:
        d = _flat_diagnostics(self.model.logger.name_to_value)
        return {k: v for k, v in d.items() if not (k == "clip_range_vf" and math.isnan(v))}

    def state_dict(self) -> dict[str, Any]:
        from stable_baselines3.common.vec_env import VecNormalize
        buf = io.BytesIO()
        self.model.save(buf)
        state: dict[str, Any] = {"sb3_zip": buf.getvalue(), "num_timesteps": int(self.model.num_timesteps)}
        if isinstance(self.venv, VecNormalize):
            state["vecnormalize"] = {"obs_rms": _rms_state(self.venv.obs_rms),
                                     "ret_rms": _rms_state(self.venv.ret_rms),
                                     "returns": self.venv.returns.copy()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from stable_baselines3.common.logger import Logger
        from stable_baselines3.common.vec_env import VecNormalize
        if isinstance(self.venv, VecNormalize) and "vecnormalize" in state:
            v = state["vecnormalize"]
            _rms_load(self.venv.obs_rms, v["obs_rms"])
            _rms_load(self.venv.ret_rms, v["ret_rms"])
            self.venv.returns = np.array(v["returns"], copy=True)
        self.model = self._sb3_cls().load(io.BytesIO(state["sb3_zip"]), env=self.venv,
                                          device=str(self.run.device))
        self.model.set_logger(Logger(folder=None, output_formats=[]))
        self.model._last_obs = None        # saved obs of envs that no longer exist: reset them on learn
        self.policy = self.model.policy
        self._resumed = True


def _rms_state(rms) -> dict[str, Any]:
    """SB3's RunningMeanStd as plain arrays (checkpoints load with weights_only)."""
    return {"mean": np.array(rms.mean, copy=True), "var": np.array(rms.var, copy=True),
            "count": float(rms.count)}


def _rms_load(rms, s: dict[str, Any]) -> None:
    rms.mean, rms.var, rms.count = np.array(s["mean"], copy=True), np.array(s["var"], copy=True), s["count"]


class SB3PPO(SB3Algorithm):
    name = "sb3-ppo"
    Config = SB3PPOConfig
    sb3_class = "stable_baselines3:PPO"

    def _kwargs(self) -> dict[str, Any]:
        c = self.cfg
        return dict(learning_rate=_schedule(c.learning_rate, c.lr_schedule), n_steps=c.n_steps,
                    batch_size=c.batch_size, n_epochs=c.n_epochs, gamma=c.gamma, gae_lambda=c.gae_lambda,
                    clip_range=_schedule(c.clip_range, c.clip_range_schedule), clip_range_vf=c.clip_range_vf,
                    normalize_advantage=c.normalize_advantage, ent_coef=c.ent_coef, vf_coef=c.vf_coef,
                    max_grad_norm=c.max_grad_norm, target_kl=c.target_kl)


class SB3TRPO(SB3Algorithm):
    """sb3-contrib's TRPO, taking the same natural-gradient step as ours and the paper's.

    sb3-contrib measures a diagonal Gaussian's KL as ``kl_divergence(new, old).mean()``, and
    SB3's ``kl_divergence`` returns torch's *per-dimension* KL for a ``Normal``, so the mean runs
    over the batch and the d action dimensions: its D̄_KL is the per-state KL divided by d. Its
    Fisher (the Hessian of that KL) is then F/d, and with δ and λ as given it solves
    (F/d + λI) s = g and accepts steps with per-state KL up to d·δ — on Hopper (d = 3) a trust
    region three times the paper's, on Walker2d and HalfCheetah (d = 6) six times.

    With ``kl_action_dims: sum`` (the default) it is given δ/d and λ/d: then
    (F/d + λ/d) s' = g has s' = d·s, the step √(2(δ/d) / s'ᵀ(F/d + λ/d)s') s' equals ours,
    and its line-search test "KL/d < δ/d" is the per-state KL < δ — in its own KL direction,
    KL(π_θ ‖ π_old) where ours uses KL(π_old ‖ π_θ) (equal to second order, so the two can stop
    a backtracking search at different points near the boundary). tests/test_update_parity.py
    checks one update against ours from the same weights and rollout. ``kl_action_dims: mean``
    runs it as shipped (the setting rl-baselines3-zoo's published TRPO numbers were made with).
    Discrete actions (the Categorical KL is already per state) and d = 1 are unaffected.
    The logged ``kl`` is multiplied back by d in either case: the per-state KL."""

    name = "sb3-trpo"
    Config = SB3TRPOConfig
    sb3_class = "sb3_contrib:TRPO"

    def kl_dims(self) -> int:
        """d: the number of dimensions sb3-contrib's KL is averaged over per state: a Box's (diagonal
        Gaussian) or a MultiBinary's (independent Bernoullis) size; 1 for Discrete and MultiDiscrete,
        whose KL SB3 already sums per state."""
        import gymnasium as gym
        space = self.venv.action_space
        return int(np.prod(space.shape)) if isinstance(space, gym.spaces.Box | gym.spaces.MultiBinary) else 1

    def diagnostics(self) -> dict[str, float]:
        d = super().diagnostics()
        if "kl" in d:
            d["kl"] *= self.kl_dims()
        return d

    def _kwargs(self) -> dict[str, Any]:
        c = self.cfg
        d = self.kl_dims() if c.kl_action_dims == "sum" else 1
        return dict(learning_rate=_schedule(c.learning_rate, c.lr_schedule), n_steps=c.n_steps,
                    batch_size=c.batch_size, gamma=c.gamma, cg_max_steps=c.cg_max_steps,
                    cg_damping=c.cg_damping / d,
                    line_search_shrinking_factor=c.line_search_shrinking_factor,
                    line_search_max_iter=c.line_search_max_iter, n_critic_updates=c.n_critic_updates,
                    gae_lambda=c.gae_lambda, normalize_advantage=c.normalize_advantage, target_kl=c.target_kl / d,
                    sub_sampling_factor=c.sub_sampling_factor)


class SB3A2C(SB3Algorithm):
    name = "sb3-a2c"
    Config = SB3A2CConfig
    sb3_class = "stable_baselines3:A2C"

    def _policy_kwargs(self) -> dict[str, Any]:
        kw = super()._policy_kwargs()
        if self.cfg.rmsprop_tf_like:
            from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
            kw.update(optimizer_class=RMSpropTFLike,
                      optimizer_kwargs=dict(alpha=0.99, eps=self.cfg.rms_prop_eps, weight_decay=0))
        return kw

    def _kwargs(self) -> dict[str, Any]:
        c = self.cfg
        return dict(learning_rate=_schedule(c.learning_rate, c.lr_schedule), n_steps=c.n_steps, gamma=c.gamma,
                    gae_lambda=c.gae_lambda, ent_coef=c.ent_coef, vf_coef=c.vf_coef,
                    max_grad_norm=c.max_grad_norm,
                    rms_prop_eps=c.rms_prop_eps, use_rms_prop=c.use_rms_prop,
                    normalize_advantage=c.normalize_advantage)
