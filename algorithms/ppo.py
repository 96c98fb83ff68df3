"""Proximal Policy Optimization, clipped objective with GAE (Schulman et al. 2017; seed §4.5.4).

Maximises, over K epochs of minibatches drawn from N envs × T steps collected with π_old,

    L^CLIP(θ) = E_t[ min(ρ_t(θ) A_t, clip(ρ_t(θ), 1 − ε, 1 + ε) A_t) ],   ρ_t = π_θ(a_t|s_t) / π_old(a_t|s_t)

together with the critic's squared error and an entropy bonus:

    loss = −L^CLIP + c_v · E[(V_φ(s_t) − R_t)²] − c_e · E[H(π_θ(·|s_t))]

A_t is GAE(γ, λ), normalised per minibatch; R_t = A_t + V_old(s_t).
"""
from __future__ import annotations

import dataclasses

import torch

from algorithms.base import BaseConfig, ConfigError
from algorithms.core.buffer import explained_variance
from algorithms.core.onpolicy import OnPolicyActorCritic


@dataclasses.dataclass
class PPOConfig(BaseConfig):
    """Defaults are Stable-Baselines3's PPO defaults."""

    n_steps: int = 2048
    batch_size: int = 64
    n_epochs: int = 10
    learning_rate: float = 3e-4
    lr_schedule: str = "constant"          # "constant" or "linear" (to 0 over the run)
    gae_lambda: float = 0.95
    clip_range: float = 0.2                # ε
    clip_range_schedule: str = "constant"  # "constant" or "linear"
    clip_range_vf: float | None = None     # value clipping (None: off)
    normalize_advantage: bool = True
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None
    log_std_init: float = 0.0

    def validate(self) -> None:
        if self.lr_schedule not in ("constant", "linear") or self.clip_range_schedule not in ("constant", "linear"):
            raise ConfigError("lr_schedule / clip_range_schedule must be 'constant' or 'linear'")
        if self.batch_size > self.n_steps * self.n_envs:
            raise ConfigError(f"batch_size={self.batch_size} exceeds n_steps*n_envs={self.n_steps * self.n_envs}")
        if not 0 < self.clip_range:
            raise ConfigError("clip_range must be > 0")


def clipped_surrogate(ratio: torch.Tensor, adv: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-sample L^CLIP = min(ρ A, clip(ρ, 1−ε, 1+ε) A)."""
    return torch.min(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)


class PPO(OnPolicyActorCritic):
    name = "ppo"
    Config = PPOConfig

    def __init__(self, cfg: PPOConfig, run) -> None:
        super().__init__(cfg, run)
        self.params = list(self.policy.parameters())
        # fused Adam: one kernel for all parameters instead of ~10 small ops per tensor
        self.opt = torch.optim.Adam(self.params, lr=cfg.learning_rate, eps=1e-5, fused=True)

    def state_dict(self) -> dict:
        return {"policy": self.policy.state_dict(), "opt": self.opt.state_dict(), "step": self.step}

    def load_state_dict(self, s: dict) -> None:
        self.policy.load_state_dict(s["policy"])
        self.opt.load_state_dict(s["opt"])
        self.step = s["step"]

    def schedules(self, step: int) -> tuple[float, float]:
        """Learning rate α and clip range ε of the update that follows the rollout ending at env step ``step``.

        With a linear schedule x_k = x_0 · max(0, 1 − t_k / B), where t_k = k · N · T counts the env steps
        collected *including* update k's rollout (k = 1, 2, …) and B is the run's budget: progress is read
        after the rollout, as in SB3 2.x (stable_baselines3/common/on_policy_algorithm.py, ``learn()``):

            continue_training = self.collect_rollouts(self.env, callback, self.rollout_buffer, ...)
            ...
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            ...
            self.train()

        and ppo.py's ``train()`` then reads ``self.lr_schedule(self._current_progress_remaining)`` and
        ``self.clip_range(self._current_progress_remaining)``, with progress = 1 − num_timesteps / total.
        One deliberate difference: when B is not a multiple of N · T the last rollout overshoots B
        and SB3's progress turns negative (a negative α: one step of gradient *ascent*; a negative ε);
        ours stops at 0.
        """
        cfg = self.cfg
        frac = self.remaining(step)                              # 1 → 0 over the run
        lr = cfg.learning_rate * (frac if cfg.lr_schedule == "linear" else 1.0)
        eps = cfg.clip_range * (frac if cfg.clip_range_schedule == "linear" else 1.0)
        return lr, eps

    def learn(self) -> None:
        cfg, run, buf, pi = self.cfg, self.run, self.buffer, self.policy
        per_update = cfg.n_steps * cfg.n_envs
        while self.step < run.total_steps:
            buf.collect(pi)
            self.step += per_update
            lr, eps = self.schedules(self.step)
            for g in self.opt.param_groups:
                g["lr"] = lr
            A, R = buf.advantages(cfg.gamma, cfg.gae_lambda)
            obs, act, logp_old, v_old, A, R = buf.flat(buf.obs, buf.actions, buf.logp, buf.values, A, R)

            n = obs.shape[0]
            stats: list[torch.Tensor] = []   # per minibatch: pg_loss, value_loss, entropy, approx_kl, clip_fraction
            stop = False
            for _epoch in range(cfg.n_epochs):
                perm = torch.randperm(n).to(obs.device)   # one gather per epoch; then contiguous views
                e_obs, e_act, e_logp_old, e_v_old, e_A, e_R = (x[perm] for x in (obs, act, logp_old, v_old, A, R))
                for start in range(0, n, cfg.batch_size):
                    mb = slice(start, start + cfg.batch_size)
                    dist, v = pi(e_obs[mb])
                    logp = dist.log_prob(e_act[mb])
                    log_ratio = logp - e_logp_old[mb]
                    ratio = log_ratio.exp()                                   # ρ_t(θ)
                    a = e_A[mb]
                    if cfg.normalize_advantage and len(a) > 1:
                        a = (a - a.mean()) / (a.std() + 1e-8)
                    pg_loss = -clipped_surrogate(ratio, a, eps).mean()        # −L^CLIP
                    if cfg.clip_range_vf is not None:
                        v = e_v_old[mb] + (v - e_v_old[mb]).clamp(-cfg.clip_range_vf, cfg.clip_range_vf)
                    v_loss = (e_R[mb] - v).pow(2).mean()
                    entropy = dist.entropy().mean()
                    loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
                    with torch.no_grad():
                        approx_kl = ((ratio - 1) - log_ratio).mean()   # Schulman's k3 estimator
                        if cfg.target_kl is not None and approx_kl.item() > 1.5 * cfg.target_kl:
                            stop = True
                            break
                        stats.append(torch.stack([pg_loss, v_loss, entropy, approx_kl,
                                                  ((ratio - 1).abs() > eps).float().mean()]))
                    self.opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
                    self.opt.step()
                if stop:
                    break
            means = torch.stack(stats).mean(0).tolist() if stats else [float("nan")] * 5
            diag = dict(zip(("pg_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"), means))
            diag.update(explained_variance=explained_variance(v_old, R), learning_rate=lr, clip_range=eps,
                        n_epochs_done=_epoch + (0 if stop else 1))
            run.log_update(self.step, diag)
