"""Natural Policy Gradient and Trust Region Policy Optimization (seed §4.5.2–4.5.3).

Both solve, once per batch of N envs × T steps collected with π_old,

    maximise_θ   L(θ) = E_t[ π_θ(a_t|s_t) / π_old(a_t|s_t) · A_t ]
    subject to   D̄_KL(π_old ‖ π_θ) = E_t[ KL(π_old(·|s_t) ‖ π_θ(·|s_t)) ] ≤ δ

with A_t = GAE(γ, λ), normalised over the batch. Linearising L and taking the quadratic
model of the KL, D̄_KL ≈ ½ Δθᵀ F Δθ, the solution is the natural gradient step

    g = ∇_θ L(θ_old)                    the policy gradient
    s = F⁻¹ g                           by conjugate gradient on (F + λI) s = g
    Δθ = β s,  β = √(2δ / sᵀ F s)       the step whose quadratic KL model equals δ

F is the Fisher matrix, the Hessian of D̄_KL at θ_old, used only through products F·v
(``algorithms.core.fisher``). As in Schulman's and sb3-contrib's code, the damped product
(F + λI) s is used in sᵀFs too, so the quadratic KL model of the step is at most δ.

The two algorithms differ only in ``take_step``:

* NPG takes the step Δθ as it is.
* TRPO searches along it, θ = θ_old + αᵏ Δθ for k = 0, 1, …, K−1 (α the shrinking factor),
  and accepts the first point where the *exact* mean KL is ≤ δ and L improved on L(θ_old).
  If none qualifies, θ_old is restored exactly (bitwise) and the update is logged as not
  accepted.

KL direction. The constraint, the Fisher and the line search all use D̄_KL(π_old ‖ π_θ), with
π_old first, as in Schulman et al. (2015) and the source text. sb3-contrib's line search uses
the reverse, ``kl_divergence(distribution, old_distribution)`` = KL(π_θ ‖ π_old). Both have the
same value (0), gradient (0) and Hessian (F) at θ_old and differ only at third order in Δθ,
so the accepted steps differ only for steps at the edge of the region. The logged ``kl`` is
D̄_KL(π_old ‖ π_θ) at the accepted θ (0 when θ_old is restored). π_old owns its statistics
(``algorithms.core.distributions``), so the in-place write of θ cannot move π_old's σ.

The critic V_φ is trained separately, after the policy step: ``n_critic_updates`` epochs of
minibatch MSE regression on the GAE returns R_t = A_t + V_old(s_t), with Adam (ε = 1e-5,
as SB3's ``ActorCriticPolicy`` optimiser).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from algorithms.base import BaseConfig, ConfigError
from algorithms.core import explicit
from algorithms.core.buffer import explained_variance
from algorithms.core.distributions import Distribution
from algorithms.core.explicit import FlatAdam, FlatParams
from algorithms.core.fisher import (
    cg,
    flat_grad,
    flat_params,
    kl_hessian_fvp,
    set_flat_params,
    statistics_fisher_product,
)
from algorithms.core.onpolicy import OnPolicyActorCritic

CRITIC_ADAM_EPS = 1e-5   # SB3 ActorCriticPolicy: optimizer_kwargs["eps"] = 1e-5 for Adam


@dataclasses.dataclass
class NPGConfig(BaseConfig):
    """Names and defaults of sb3-contrib's TRPO, less the line search.

    The critic's Adam uses ε = ``CRITIC_ADAM_EPS`` = 1e-5, the ε that SB3's
    ``ActorCriticPolicy`` (and so sb3-contrib's TRPO) gives Adam, not torch's 1e-8.
    """

    n_steps: int = 2048
    batch_size: int = 128                 # critic minibatch size
    learning_rate: float = 1e-3           # critic (Adam)
    n_critic_updates: int = 10            # critic epochs per update
    gae_lambda: float = 0.95
    cg_max_steps: int = 15
    cg_damping: float = 0.1               # λ in (F + λI)
    target_kl: float = 0.01               # δ, the trust-region radius in mean KL
    normalize_advantage: bool = True
    sub_sampling_factor: int = 1          # policy step on every k-th sample
    log_std_init: float = 0.0

    def validate(self) -> None:
        if self.batch_size > self.n_steps * self.n_envs:
            raise ConfigError(f"batch_size={self.batch_size} exceeds n_steps*n_envs="
                              f"{self.n_steps * self.n_envs}")
        if not self.target_kl > 0:
            raise ConfigError("target_kl (δ) must be > 0")
        if self.cg_damping < 0 or self.cg_max_steps < 1 or self.sub_sampling_factor < 1:
            raise ConfigError("need cg_damping >= 0, cg_max_steps >= 1, sub_sampling_factor >= 1")


@dataclasses.dataclass
class TRPOConfig(NPGConfig):
    """sb3-contrib's TRPO names and defaults."""

    line_search_shrinking_factor: float = 0.8    # α
    line_search_max_iter: int = 10               # K

    def validate(self) -> None:
        super().validate()
        if not 0 < self.line_search_shrinking_factor < 1 or self.line_search_max_iter < 1:
            raise ConfigError("need 0 < line_search_shrinking_factor < 1 and line_search_max_iter >= 1")


@dataclasses.dataclass
class StepProblem:
    """One natural-gradient step, ready to be taken: everything ``take_step`` needs."""

    params: list[torch.nn.Parameter]            # θ, the actor's parameters (log σ included)
    theta_old: torch.Tensor                     # θ_old, flat copy
    full_step: torch.Tensor                     # Δθ = β s
    max_kl: float                               # δ
    surrogate_before: float                     # L(θ_old)
    evaluate: Callable[[], tuple[float, float, Distribution]]  # (L(θ), D̄_KL(π_old ‖ π_θ), π_θ) at the current θ
    accepted: tuple[float, float, Distribution] | None = None  # evaluate() at the accepted θ, if take_step made it


REDUCTION_GRAIN = 32768   # torch's GRAIN_SIZE: a CPU reduction of more elements may be split across threads


def minibatch_mse(errs: list[torch.Tensor]) -> torch.Tensor:
    """(1/B) Σ_t err_t² of each minibatch's errors (B × 1). On the CPU, minibatches of one size up to
    ``REDUCTION_GRAIN`` rows are reduced in one call, which gives each the bits of its own
    ``err.square().mean()`` (tests/test_trpo.py) for a fifth of the per-call cost; otherwise (a larger
    minibatch, which torch may split across threads; another device) one reduction each."""
    B = len(errs[0])
    if errs[0].device.type == "cpu" and B <= REDUCTION_GRAIN and all(len(e) == B for e in errs):
        return torch.stack(errs).square().mean((1, 2))
    return torch.stack([e.square().mean() for e in errs])


class NPG(OnPolicyActorCritic):
    """Natural policy gradient: one normalised step Δθ = √(2δ / sᵀFs) s per batch."""

    name = "npg"
    Config = NPGConfig

    def __init__(self, cfg: NPGConfig, run) -> None:
        super().__init__(cfg, run)
        pi = self.policy
        self.critic_flat = FlatParams(pi.critic_parameters())        # φ as one vector
        self.critic_opt = FlatAdam(self.critic_flat, cfg.learning_rate, eps=CRITIC_ADAM_EPS)
        # MLPs: the critic's backward pass written out (core/explicit.py); CNNs: autograd
        self.critic_net = explicit.layers(pi.v_trunk, pi.v, self.critic_flat) if explicit.supports(pi) else None
        self.bind_actor()

    def bind_actor(self) -> None:
        """θ as one flat vector with the actor's layers bound to it (MLPs; ``None`` for CNNs: autograd)."""
        pi = self.policy
        self.actor_flat = FlatParams(pi.actor_parameters()) if explicit.supports(pi) else None
        self.actor_net = explicit.layers(pi.pi_trunk, pi.pi.linear, self.actor_flat) if self.actor_flat else None

    def parameter_vectors(self) -> list[torch.Tensor] | None:
        """θ and φ, whose views are every parameter of the policy (when the actor is flat: MLPs)."""
        return None if self.actor_flat is None else [self.actor_flat.theta, self.critic_flat.theta]

    def state_dict(self) -> dict:
        """Policy, critic optimiser, step counter; the runner saves the env (normalisation
        statistics included) and the RNG states."""
        return {"policy": self.policy.state_dict(), "critic_opt": self.critic_opt.state_dict(),
                "step": self.step}

    def load_state_dict(self, s: dict) -> None:
        self.policy.load_state_dict(s["policy"])
        self.critic_opt.load_state_dict(s["critic_opt"])
        self.step = s["step"]

    # --- the policy step ---------------------------------------------------------------
    def step_problem(self, obs: torch.Tensor, act: torch.Tensor,
                     adv: torch.Tensor) -> tuple[StepProblem, dict]:
        """Build g, F·v, s = F⁻¹g (CG) and the full step Δθ = √(2δ / sᵀFs) s at θ_old."""
        cfg, pi = self.cfg, self.policy
        params = pi.actor_parameters()

        def surrogate_and_kl(dist) -> tuple[torch.Tensor, torch.Tensor]:
            ratio = torch.exp(dist.log_prob(act) - logp_old)
            return (ratio * adv).mean(), old.kl(dist).mean()

        if self.actor_net is not None:                  # MLPs: π_old, g and F·v from one explicit forward
            old, surr, g, Fv = self.explicit_gradient_and_fisher(obs, act, adv)
            logp_old = old.log_prob(act)
        else:
            with torch.no_grad():
                old = pi.dist(obs)                      # π_old, fixed from here on
                logp_old = old.log_prob(act)
            dist = pi.dist(obs)                             # π_θ at θ = θ_old, with graph
            surr, kl = surrogate_and_kl(dist)
            g = flat_grad(surr, params, retain_graph=True)  # g = ∇_θ L(θ_old)
            Fv = kl_hessian_fvp(kl, params, cfg.cg_damping)  # v ↦ (F + λI) v
        s, residual = cg(Fv, g, cfg.cg_max_steps)       # s ≈ F⁻¹ g
        sFs = float(s @ Fv(s))
        beta = (2 * cfg.target_kl / sFs) ** 0.5 if sFs > 0 and np.isfinite(sFs) else 0.0
        full_step = beta * s

        def evaluate() -> tuple[float, float, Distribution]:
            with torch.no_grad():
                dist = pi.dist(obs)
                L, D = surrogate_and_kl(dist)
            return float(L), float(D), dist

        problem = StepProblem(params, flat_params(params), full_step, cfg.target_kl, surr.item(), evaluate)
        diag = {"cg_residual": residual, "step_norm": float(full_step.norm()), "step_size": beta,
                "grad_norm": float(g.norm())}
        return problem, diag

    @torch.no_grad()
    def explicit_gradient_and_fisher(self, obs: torch.Tensor, act: torch.Tensor, adv: torch.Tensor
                                     ) -> tuple[Distribution, torch.Tensor, torch.Tensor, Callable]:
        """π_old, L(θ_old), g and v ↦ (F + λI) v for an MLP actor, without autograd (``core/explicit.py``):

            g   = (1/N) Σ_t ρ_t A_t J_tᵀ ∂log π(a_t|s_t)/∂φ_t
            F v = (1/N) Σ_t J_tᵀ M_t J_t v

        J_t = ∂φ_t/∂θ, and M_t the Fisher of π(·|s_t) in its statistics φ (``statistics_fisher_product``).
        At θ_old, ∂KL/∂φ = 0, so this Gauss-Newton form *is* the Hessian of D̄_KL that
        ``kl_hessian_fvp`` differentiates twice (tests/test_trpo.py checks one against the other)."""
        net, flat, head, n = self.actor_net, self.actor_flat, self.policy.pi, obs.shape[0]
        flat.check()
        h = explicit.forward(net, obs)
        dist = head.distribution(h[-1])             # π_old = π_θ at θ = θ_old (it owns its statistics)
        surr = adv.mean()                           # L(θ_old) = E_t[ρ_t A_t], ρ_t = 1 at θ_old
        log_std = None if head.discrete else flat.index[id(head.log_std)]

        def pull_back(u: tuple[torch.Tensor, ...]) -> torch.Tensor:
            """Σ_t J_tᵀ u_t for statistics-space vectors u_t = (∂/∂z) or (∂/∂μ, ∂/∂log σ)."""
            if log_std is not None:                              # log σ is shared by every state
                flat.grad_of[id(head.log_std)].copy_(u[1].sum(0))
            explicit.backward(net, h, u[0])
            return flat.grad.clone()

        g = pull_back(tuple((adv / n).unsqueeze(-1) * s for s in dist.log_prob_grad(act)))   # ρ_t = 1
        damping = self.cfg.cg_damping

        def Fv(v: torch.Tensor) -> torch.Tensor:
            parts = flat.views(v)
            jv = explicit.jvp(net, h, parts)
            u = (jv,) if log_std is None else (jv, parts[log_std].expand_as(jv))
            return pull_back(tuple(m / n for m in statistics_fisher_product(dist, u))) + damping * v

        return dist, surr, g, Fv

    def take_step(self, p: StepProblem) -> dict:
        """NPG: θ = θ_old + Δθ, always accepted."""
        set_flat_params(p.params, p.theta_old + p.full_step)
        return {"line_search_steps": 0, "step_accepted": 1}

    # --- the critic --------------------------------------------------------------------
    def fit_critic(self, obs: torch.Tensor, returns: torch.Tensor) -> float:
        """``n_critic_updates`` epochs of minibatch MSE on R_t; returns the mean loss.
        ∂/∂V_t of (1/B) Σ_t (V_t − R_t)² is (2/B)(V_t − R_t), back-propagated explicitly for MLPs."""
        cfg, pi, flat, net = self.cfg, self.policy, self.critic_flat, self.critic_net
        n, B, losses, errs = obs.shape[0], cfg.batch_size, [], []
        flat.check()
        for _ in range(cfg.n_critic_updates):
            perm = torch.randperm(n).to(obs.device)   # drawn on the host: the same stream on any device
            # one gather per epoch; the minibatches are its contiguous slices (the same rows, in the same order)
            obs_e, ret_e = obs[perm], returns[perm].unsqueeze(-1)
            for start in range(0, n, B):
                o, r = obs_e[start:start + B], ret_e[start:start + B]
                if net is not None:
                    with torch.no_grad():
                        h = explicit.forward(net, o)
                        err = h[-1] - r                               # V_t − R_t, B × 1
                        explicit.backward(net, h, err.mul(2.0 / len(r)))
                    errs.append(err)                                  # its loss is reduced after the loop
                else:
                    loss = (pi.value(o) - r.squeeze(-1)).pow(2).mean()
                    flat.autograd(loss)
                    losses.append(loss.detach())
                self.critic_opt.step()
        return float((torch.stack(losses) if losses else minibatch_mse(errs)).mean())

    def learn(self) -> None:
        cfg, run, buf, pi = self.cfg, self.run, self.buffer, self.policy
        per_update = cfg.n_steps * cfg.n_envs
        while self.step < run.total_steps:
            buf.collect(pi)
            self.step += per_update
            A, R = buf.advantages(cfg.gamma, cfg.gae_lambda)
            obs, act, v_old, A, R = buf.flat(buf.obs, buf.actions, buf.values, A, R)

            k = cfg.sub_sampling_factor
            p_obs, p_act, p_adv = obs[::k], act[::k], A[::k]
            if cfg.normalize_advantage and len(p_adv) > 1:
                p_adv = (p_adv - p_adv.mean()) / (p_adv.std() + 1e-8)
            problem, diag = self.step_problem(p_obs, p_act, p_adv)
            diag.update(self.take_step(problem))
            surrogate_after, kl, dist = problem.accepted or problem.evaluate()   # at the θ now taken
            with torch.no_grad():
                log_ratio = dist.log_prob(p_act) - buf.flat(buf.logp)[0][::k]
            diag.update(kl=kl, max_kl=problem.max_kl, surrogate_before=problem.surrogate_before,
                        surrogate_after=surrogate_after, entropy=float(dist.entropy().mean()),
                        approx_kl=float(((log_ratio.exp() - 1) - log_ratio).mean()))

            diag["value_loss"] = self.fit_critic(obs, R)
            diag["explained_variance"] = explained_variance(v_old, R)
            run.log_update(self.step, diag)


class TRPO(NPG):
    """NPG's step followed by a backtracking line search on the exact KL and surrogate."""

    name = "trpo"
    Config = TRPOConfig

    def take_step(self, p: StepProblem) -> dict:
        """TRPO: backtrack θ = θ_old + αᵏ Δθ, k = 0 … K−1, until D̄_KL ≤ δ and L improves;
        else restore θ_old. ``line_search_steps`` counts the points tried."""
        cfg = self.cfg
        for k in range(cfg.line_search_max_iter):
            set_flat_params(p.params, p.theta_old + cfg.line_search_shrinking_factor ** k * p.full_step)
            evaluation = p.evaluate()
            surrogate, kl, _ = evaluation
            if kl <= p.max_kl and surrogate > p.surrogate_before:
                p.accepted = evaluation                     # what learn() logs: L, D̄_KL and π_θ at this θ
                return {"line_search_steps": k + 1, "step_accepted": 1}
        p.accepted = None
        set_flat_params(p.params, p.theta_old)          # nothing accepted: θ = θ_old, bitwise
        return {"line_search_steps": cfg.line_search_max_iter, "step_accepted": 0}
