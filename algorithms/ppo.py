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
from algorithms.core import explicit
from algorithms.core.buffer import explained_variance
from algorithms.core.explicit import FlatAdam, FlatParams
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
        self.bind()
        self.opt = FlatAdam(self.flat, cfg.learning_rate, eps=1e-5)

    def bind(self) -> None:
        """θ (actor and critic) as one flat vector; for MLPs the layers of the written-out backward
        pass bound to it (core/explicit.py), for CNNs autograd (``explicit`` False)."""
        pi = self.policy
        self.flat = FlatParams(list(pi.parameters()))
        self.explicit = explicit.supports(pi)
        if self.explicit:
            self.actor = explicit.layers(pi.pi_trunk, pi.pi.linear, self.flat)
            self.critic = explicit.layers(pi.v_trunk, pi.v, self.flat)

    def parameter_vectors(self) -> list[torch.Tensor] | None:
        """θ, whose views are every parameter of the policy (actor and critic)."""
        return [self.flat.theta]

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
            self.opt.lr = lr
            A, R = buf.advantages(cfg.gamma, cfg.gae_lambda)
            obs, act, logp_old, v_old, A, R = buf.flat(buf.obs, buf.actions, buf.logp, buf.values, A, R)

            n = obs.shape[0]
            self.flat.check()
            stats: list[torch.Tensor] = []   # per minibatch: pg_loss, value_loss, entropy, approx_kl, clip_fraction
            stop = False
            grad = self.explicit_grad if self.explicit else self.autograd_grad   # ∇ loss into self.flat.grad
            for _epoch in range(cfg.n_epochs):
                perm = torch.randperm(n).to(obs.device)   # one gather per epoch; then contiguous views
                e_obs, e_act, e_logp_old, e_v_old, e_A, e_R = (x[perm] for x in (obs, act, logp_old, v_old, A, R))
                for start in range(0, n, cfg.batch_size):
                    mb = slice(start, start + cfg.batch_size)
                    st = grad(e_obs[mb], e_act[mb], e_logp_old[mb], e_v_old[mb], e_A[mb], e_R[mb], eps)
                    if cfg.target_kl is not None and st[3].item() > 1.5 * cfg.target_kl:
                        stop = True      # approx KL before this minibatch's step: the step is not taken
                        break
                    stats.append(st)
                    self.flat.clip_grad_norm(cfg.max_grad_norm)
                    self.opt.step()
                if stop:
                    break
            means = torch.stack(stats).mean(0).tolist() if stats else [float("nan")] * 5
            diag = dict(zip(("pg_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"), means))
            diag.update(explained_variance=explained_variance(v_old, R), learning_rate=lr, clip_range=eps,
                        n_epochs_done=_epoch + (0 if stop else 1))
            run.log_update(self.step, diag)

    # --- ∇_θ loss on one minibatch, into self.flat.grad; returns the minibatch's statistics ---------
    def autograd_grad(self, obs, act, logp_old, v_old, A, R, eps: float) -> torch.Tensor:
        """The loss as written in the module docstring, differentiated by autograd (any network)."""
        cfg = self.cfg
        dist, v = self.policy(obs)
        logp = dist.log_prob(act)
        log_ratio = logp - logp_old
        ratio = log_ratio.exp()                                   # ρ_t(θ)
        a = _normalise(A) if cfg.normalize_advantage else A
        pg_loss = -clipped_surrogate(ratio, a, eps).mean()        # −L^CLIP
        if cfg.clip_range_vf is not None:
            v = v_old + (v - v_old).clamp(-cfg.clip_range_vf, cfg.clip_range_vf)
        v_loss = (R - v).pow(2).mean()
        entropy = dist.entropy().mean()
        loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy
        self.flat.autograd(loss)
        return _stats(pg_loss, v_loss, entropy, ratio, log_ratio, eps)

    @torch.no_grad()
    def explicit_grad(self, obs, act, logp_old, v_old, A, R, eps: float) -> torch.Tensor:
        """The same gradient for MLPs, by the chain rule written out (``core/explicit.py``):

            ∂loss/∂log π_t = −(1/B) ρ_t A_t · 1[ρ_t A_t ≤ clip(ρ_t) A_t]    (the min's unclipped branch)
            ∂loss/∂φ_t     = ∂loss/∂log π_t · ∂log π_t/∂φ_t − (c_e/B) ∂H_t/∂φ_t
            ∂loss/∂V_t     = (2 c_v / B) (V_t − R_t)   (· 1[|V_t − V_old,t| ≤ ε_v] with value clipping)

        then back through the actor and the critic. Tested against ``autograd_grad``."""
        cfg, head, B = self.cfg, self.policy.pi, obs.shape[0]
        h_pi, h_v = explicit.forward(self.actor, obs), explicit.forward(self.critic, obs)
        dist, v = head.distribution(h_pi[-1]), h_v[-1].squeeze(-1)
        logp, score = dist.log_prob_and_grad(act)               # log π(a_t|s_t), ∂log π/∂φ_t
        log_ratio = logp - logp_old
        ratio = log_ratio.exp()                                   # ρ_t(θ)
        a = _normalise(A) if cfg.normalize_advantage else A
        surr1, surr2 = ratio * a, ratio.clamp(1 - eps, 1 + eps) * a
        pg_loss = -torch.min(surr1, surr2).mean()                 # −L^CLIP
        d_logp = torch.where(surr1 <= surr2, surr1, 0.0).mul_(-1.0 / B)
        d_v = v - R
        if cfg.clip_range_vf is not None:
            dv = v - v_old
            d_v = v_old + dv.clamp(-cfg.clip_range_vf, cfg.clip_range_vf) - R
            v_loss = d_v.square().mean()
            d_v = d_v * (dv.abs() <= cfg.clip_range_vf)
        else:
            v_loss = d_v.square().mean()
        entropy = dist.entropy().mean()
        d_phi = [d_logp.unsqueeze(-1) * g for g in score]        # φ = (z) or (μ, log σ)
        if cfg.ent_coef:
            d_phi = [d - (cfg.ent_coef / B) * g for d, g in zip(d_phi, dist.entropy_grad())]
        if not head.discrete:            # log σ is state-independent: its gradient sums over the batch
            self.flat.grad_of[id(head.log_std)].copy_(d_phi[1].sum(0))
        explicit.backward(self.actor, h_pi, d_phi[0])
        explicit.backward(self.critic, h_v, d_v.mul_(2 * cfg.vf_coef / B).unsqueeze(-1))
        return _stats(pg_loss, v_loss, entropy, ratio, log_ratio, eps)


def _normalise(a: torch.Tensor) -> torch.Tensor:
    """Advantages standardised over the minibatch (left as they are for a minibatch of one)."""
    return (a - a.mean()) / (a.std() + 1e-8) if len(a) > 1 else a


def _stats(pg_loss, v_loss, entropy, ratio, log_ratio, eps: float) -> torch.Tensor:
    """(pg_loss, value_loss, entropy, approx_kl, clip_fraction), approx KL by Schulman's k3 estimator."""
    with torch.no_grad():
        r1 = ratio - 1
        return torch.stack([pg_loss, v_loss, entropy, (r1 - log_ratio).mean(), (r1.abs() > eps).float().mean()])
