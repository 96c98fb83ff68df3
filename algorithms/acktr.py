"""ACKTR: actor-critic with a Kronecker-factored trust region (Wu et al. 2017; seed §4.5.2's K-FAC
alternative to conjugate gradient). Defaults are OpenAI Baselines' ``acktr``.

Each update collects N envs × T steps with π_θ, forms the A2C loss

    L(θ) = −E_t[A_t log π_θ(a_t|s_t)] − c_e E_t[H(π_θ(·|s_t))] + c_v E_t[(R_t − V_θ(s_t))²]

(A_t = GAE(γ, λ); Baselines' n-step returns are λ = 1), and preconditions its gradient g with the
K-FAC Fisher F̂ of every linear and conv layer (``algorithms/core/kfac.py``; convolutions as in KFC,
Grosse & Martens 2016): Δ = F̂⁻¹g per layer,
(G + √λ_d I)⁻¹ ∇W (A + √λ_d I)⁻¹. The factors are running averages (``stats_decay``) of
statistics from the policy's *own* samples: log π(ã|s) with ã ~ π for the actor, and for the critic
the Gauss-Newton Fisher of a Gaussian on V (targets V + ε, ε ~ N(0, 1), scaled by
``vf_fisher_coef``). Parameters outside those layers (log σ) take the plain gradient.

The step is scaled to a KL trust region on the quadratic model, ½ η² Δᵀ F̂ Δ = ½ η² gᵀΔ:

    s = min(1, √(δ_KL / (α² gᵀΔ))),    v ← μ v + s Δ,    θ ← θ − α (1 − μ) v

(α the learning rate, δ_KL = ``kl_clip``, μ the momentum), as Baselines' KfacOptimizer does (a TF
MomentumOptimizer at rate α(1 − μ): in a steady direction the step tends to α s Δ, not α s Δ / (1 − μ)).
With ``critic_kl_clip`` > 0 (Baselines' ``acktr_cont``, whose policy and value networks have one
KfacOptimizer each: clip_kl 0.01 and 0.3) the actor's parameters get s from their own gᵀΔ against
δ_KL and the critic's from theirs against ``critic_kl_clip`` — the critic's Gauss-Newton "KL" no
longer spends the policy's trust region; with 0 (Baselines' ``acktr``: one network, one optimizer)
one s for all. With ``kl_target`` > 0 (``acktr_cont``, the MuJoCo entry) α itself follows the KL measured
after each update, KL(π_old ‖ π_new) on the batch:

    α ← α / 1.5  if KL > 2 kl_target;    α ← 1.5 α  if KL < kl_target / 2;    α ∈ [10⁻⁸, 1].

Simplifications, stated: the inverses are recomputed every update (Baselines: every 10 updates,
asynchronously); ``acktr_cont``'s first ("cold") update at α(1 − μ), and its value network's own
inputs, rate (0.001) and 25 K-FAC steps per batch are not reproduced: the critic here takes one step
per update at the actor's α, inside its own KL budget, as the rest of the suite's actor-critics.
"""
from __future__ import annotations

import dataclasses

import torch

from algorithms.base import BaseConfig, ConfigError
from algorithms.core.buffer import explained_variance
from algorithms.core.kfac import KFACFisher
from algorithms.core.onpolicy import OnPolicyActorCritic


@dataclasses.dataclass
class ACKTRConfig(BaseConfig):
    """Defaults: Baselines ``acktr`` (Atari) — 16 envs × 20 steps, α 0.25 decaying linearly, δ_KL 0.001."""

    n_envs: int = 16
    n_steps: int = 20
    learning_rate: float = 0.25            # α
    lr_schedule: str = "linear"            # "constant" or "linear" (to 0 over the run)
    gae_lambda: float = 1.0                # 1: n-step returns (Baselines)
    normalize_advantage: bool = False
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    vf_fisher_coef: float = 1.0
    kl_clip: float = 0.001                 # δ_KL of the quadratic model
    damping: float = 0.01                  # λ_d, split √λ_d on each Kronecker factor
    stats_decay: float = 0.95              # running average of the factors
    momentum: float = 0.9                  # μ
    kl_target: float = 0.0                 # > 0: adapt α to the measured KL (Baselines acktr_cont); 0: off
    critic_kl_clip: float = 0.0            # > 0: the critic's own δ (acktr_cont: 0.3); 0: one joint region
    log_std_init: float = 0.0

    def validate(self) -> None:
        if self.lr_schedule not in ("constant", "linear"):
            raise ConfigError("lr_schedule must be 'constant' or 'linear'")
        if not (self.kl_clip > 0 and self.damping > 0 and 0 <= self.stats_decay < 1 and 0 <= self.momentum < 1):
            raise ConfigError("need kl_clip > 0, damping > 0, 0 ≤ stats_decay < 1, 0 ≤ momentum < 1")
        if self.critic_kl_clip < 0:
            raise ConfigError("critic_kl_clip must be ≥ 0 (0: one trust region for actor and critic)")
        if self.kl_target < 0:
            raise ConfigError("kl_target must be ≥ 0 (0: a fixed or scheduled α)")


def _trust_scale(vFv: float, kl_clip: float) -> float:
    """s = min(1, √(δ_KL / vFv)): the step's quadratic-model KL ½ s² vFv kept ≤ δ_KL / 2."""
    return min(1.0, (kl_clip / vFv) ** 0.5) if vFv > 0 else 1.0


class ACKTR(OnPolicyActorCritic):
    name = "acktr"
    Config = ACKTRConfig

    def __init__(self, cfg: ACKTRConfig, run) -> None:
        super().__init__(cfg, run)
        self.params = list(self.policy.parameters())
        self.kfac = KFACFisher(self.policy, damping=cfg.damping, decay=cfg.stats_decay)
        self.velocity = [torch.zeros_like(p) for p in self.params]
        self.alpha_scale = 1.0           # the KL adaptation's factor on α (kl_target > 0), checkpointed
        critic = {id(p) for n, p in self.policy.named_parameters() if n.startswith(("v_trunk.", "v."))}
        if cfg.critic_kl_clip > 0 and self.policy.share:
            raise ConfigError("critic_kl_clip > 0 needs separate actor and critic networks (share_trunk off)")
        self.is_critic = [id(p) in critic for p in self.params]

    def state_dict(self) -> dict:
        idx = {m: i for i, m in enumerate(self.kfac.layers)}
        return {"policy": self.policy.state_dict(), "velocity": self.velocity, "step": self.step,
                "alpha_scale": self.alpha_scale,
                "A": {idx[m]: a for m, a in self.kfac.A.items()}, "G": {idx[m]: g for m, g in self.kfac.G.items()}}

    def load_state_dict(self, s: dict) -> None:
        self.policy.load_state_dict(s["policy"])
        dev = self.run.device
        self.velocity = [v.to(dev) for v in s["velocity"]]
        self.step = s["step"]
        self.alpha_scale = float(s.get("alpha_scale", 1.0))
        self.kfac.A = {self.kfac.layers[i]: a.to(dev) for i, a in s["A"].items()}
        self.kfac.G = {self.kfac.layers[i]: g.to(dev) for i, g in s["G"].items()}

    def fisher_statistics(self, obs: torch.Tensor) -> None:
        """Update the Kronecker factors from the policy's own samples: Σ log π(ã|s), ã ~ π, for the
        actor; for the critic −½ c_f Σ (V − sg(V + ε))², whose gradient in V is c_f ε, ε ~ N(0, 1)."""
        cfg, pi = self.cfg, self.policy

        def loss() -> torch.Tensor:
            dist, v = pi(obs)
            with torch.no_grad():
                a = dist.sample()
                target = v + torch.randn_like(v)
            return dist.log_prob(a).sum() - 0.5 * cfg.vf_fisher_coef * (v - target).pow(2).sum()
        self.kfac.record(loss)

    def natural_direction(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """Δ = F̂⁻¹g for the parameters of linear and conv layers, g itself for the others."""
        by_param = dict(zip(map(id, self.params), grads, strict=True))
        nat = self.kfac.natural_gradient({m: (by_param[id(m.weight)], by_param[id(m.bias)] if m.bias is not None
                                              else None) for m in self.kfac.layers})
        out = dict(by_param)
        for m, (w, b) in nat.items():
            out[id(m.weight)] = w
            if b is not None:
                out[id(m.bias)] = b
        return [out[id(p)] for p in self.params]

    def learn(self) -> None:
        cfg, run, buf, pi = self.cfg, self.run, self.buffer, self.policy
        per_update = cfg.n_steps * cfg.n_envs
        while self.step < run.total_steps:
            buf.collect(pi)
            self.step += per_update
            lr = cfg.learning_rate * self.alpha_scale * (self.remaining(self.step) if cfg.lr_schedule == "linear"
                                                         else 1.0)
            A, R = buf.advantages(cfg.gamma, cfg.gae_lambda)
            obs, act, v_old, A, R = buf.flat(buf.obs, buf.actions, buf.values, A, R)
            if cfg.normalize_advantage and len(A) > 1:
                A = (A - A.mean()) / (A.std() + 1e-8)

            self.fisher_statistics(obs)
            dist, v = pi(obs)
            logp = dist.log_prob(act)
            pg_loss = -(A * logp).mean()
            entropy = dist.entropy().mean()
            v_loss = (R - v).pow(2).mean()
            loss = pg_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
            grads = torch.autograd.grad(loss, self.params)
            delta = self.natural_direction(list(grads))
            gd = [float((g * d).sum()) for g, d in zip(grads, delta, strict=True)]     # gᵀF̂⁻¹g per tensor
            if cfg.critic_kl_clip > 0:                                # actor and critic: a region each
                vFv = lr ** 2 * sum(x for x, c in zip(gd, self.is_critic, strict=True) if not c)
                vFv_c = lr ** 2 * sum(x for x, c in zip(gd, self.is_critic, strict=True) if c)
                scale, scale_c = _trust_scale(vFv, cfg.kl_clip), _trust_scale(vFv_c, cfg.critic_kl_clip)
            else:                                                     # one joint region
                vFv = lr ** 2 * sum(gd)
                scale = scale_c = _trust_scale(vFv, cfg.kl_clip)
            old = dist.detach()                                       # π_old: the loss's forward, before the step
            with torch.no_grad():
                for p, vel, d, c in zip(self.params, self.velocity, delta, self.is_critic, strict=True):
                    vel.mul_(cfg.momentum).add_(d, alpha=scale_c if c else scale)
                    p.sub_(vel, alpha=lr * (1 - cfg.momentum))
                kl = float(old.kl(pi.dist(obs)).mean())               # KL(π_old ‖ π_new), measured
            if cfg.kl_target > 0:                                     # α for the next update (acktr_cont)
                if kl > 2 * cfg.kl_target:
                    self.alpha_scale = max(1e-8 / cfg.learning_rate, self.alpha_scale / 1.5)
                elif kl < cfg.kl_target / 2:
                    self.alpha_scale = min(1.0 / cfg.learning_rate, self.alpha_scale * 1.5)
            run.log_update(self.step, {
                "pg_loss": float(pg_loss.detach()), "value_loss": float(v_loss.detach()),
                "entropy": float(entropy.detach()),
                "kl": kl, "kl_model": 0.5 * vFv * scale ** 2, "step_scale": scale,
                "critic_step_scale": scale_c, "learning_rate": lr,
                "damping": cfg.damping, "explained_variance": explained_variance(v_old, R)})
