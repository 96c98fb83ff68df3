"""ACER for continuous actions (Wang et al. 2017, §4 and Algorithm 2; seed §4.5.5).

Policy: π(·|s) = f(·|φ_θ(s)), a diagonal Gaussian whose statistics φ are the mean and a
state-independent log σ (both carry the trust region). Critic: a Stochastic Dueling Network,

    Q̃(s, a) = V(s) + A(s, a) − (1/n) Σ_{i=1}^{n} A(s, u_i),   u_i ~ π(·|s)   (n = ``sdn_samples``)

so V and Q̃ come from one network and Σ_a π Q̃ ≈ V. Targets (``algorithms.core.acer_ops.retrace``):

    Q^ret_t = r_t + γ V(s_{t+1}) + γ c_{t+1} (Q^ret_{t+1} − Q̃(s_{t+1}, a_{t+1})),   c_i = λ min(1, ρ_i^{1/d})
    Q^opc_t = the same recursion with c ≡ 1

with ρ_i = f(a_i|φ(s_i)) / μ(a_i|s_i) and d the action dimension. Per step the policy ascends

    g = min(c, ρ_t) (Q^opc_t − V(s_t)) ∇_φ log f(a_t|φ)
        + (1 − c/ρ'_t)₊ (Q̃(s_t, a'_t) − V(s_t)) ∇_φ log f(a'_t|φ)     a'_t ~ π(·|s_t),
        + ent_coef ∇_φ H(f(·|φ))                                       ρ'_t = f(a'_t|φ)/μ(a'_t|s_t)

projected by the trust region (z* = g − max(0, (kᵀg − δ)/‖k‖²) k, k = ∇_φ KL(f(·|φ_avg) ‖ f(·|φ))).
The critic minimises ½ (Q^ret_t − Q̃(s_t, a_t))² + ½ (V^target_t − V(s_t))², with
V^target_t = min(1, ρ_t) (Q^ret_t − Q̃(s_t, a_t)) + V(s_t) (the paper's extra V gradient).

g and k are closed forms in φ: ∇_μ log f(a|φ) = (a − μ)/σ², ∇_log σ log f(a|φ) = ((a − μ)/σ)² − 1,
∇_log σ H = 1, and k = ((μ − μ_avg)/σ², 1 − (σ_avg² + (μ − μ_avg)²)/σ²). ``continuous_terms`` evaluates
the network through its modules and returns the loss for autograd (any trunk, CNNs included, any
device). For MLP trunks on the CPU the same update is written out in NumPy, gradient included
(``algorithms.acer_numpy``; tested against this function's loss differentiated by autograd).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from algorithms.core.acer_ops import TermsConfig, next_values, retrace, tr_diagnostics
from algorithms.core.activations import ACTIVATIONS
from algorithms.core.distributions import DiagGaussian
from algorithms.core.nets import is_image_space, make_trunk, ortho_init
from algorithms.core.replay import Trajectory


class SDNet(nn.Module):
    """Gaussian policy (mean head + log σ) and a Stochastic Dueling Network (V head, A(s, a) MLP).
    Separate trunks for vector observations, one shared trunk for images."""

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.spaces.Box,
        hidden: tuple[int, ...],
        activation: str,
        log_std_init: float = 0.0,
        cnn: str = "nature",
    ) -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        share = is_image_space(obs_space)
        self.pi_trunk, d = make_trunk(obs_space, hidden, act, cnn)
        self.v_trunk = self.pi_trunk if share else make_trunk(obs_space, hidden, act, cnn)[0]
        ortho_init(self.pi_trunk)
        ortho_init(self.v_trunk)
        D = int(np.prod(action_space.shape))
        self.mean = ortho_init(nn.Linear(d, D), gain=0.01)
        self.log_std = nn.Parameter(torch.full((D,), float(log_std_init)))
        self.v = ortho_init(nn.Linear(d, 1), gain=1.0)
        h = hidden[-1] if hidden else 64
        self.adv = nn.Sequential(
            ortho_init(nn.Linear(d + D, h)), act(), ortho_init(nn.Linear(h, 1), gain=1.0)
        )

    def dist(self, obs: torch.Tensor) -> DiagGaussian:
        return DiagGaussian(self.mean(self.pi_trunk(obs)), self.log_std)

    def critic_features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.v_trunk(obs)

    def advantage(self, h: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """A(s, a) for K actions per state: h (M, d), actions (K, M, D) → (K, M)."""
        K = actions.shape[0]
        x = torch.cat([h.unsqueeze(0).expand(K, *h.shape), actions], -1)
        return self.adv(x).squeeze(-1)


class ModuleSDN:
    """SDNet evaluated through its modules, differentiated by autograd (any trunk, CNNs included)."""

    def __init__(self, net: SDNet, avg: SDNet) -> None:
        self.net, self.avg = net, avg

    def values(self, obs: torch.Tensor) -> torch.Tensor:
        """V of every row of ``obs``; keeps the critic features h for ``advantage``."""
        self.h = self.net.critic_features(obs)
        return self.net.v(self.h).squeeze(-1)

    def policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.mean(self.net.pi_trunk(obs)), self.net.log_std

    @torch.no_grad()
    def avg_policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.avg.mean(self.avg.pi_trunk(obs)), self.avg.log_std

    def advantage(self, actions: torch.Tensor) -> torch.Tensor:
        """A(s_m, a) for the first M rows given to ``values``: actions (K, M, D) → (K, M)."""
        return self.net.advantage(self.h[: actions.shape[1]], actions)


def continuous_terms(net: SDNet, avg: SDNet, batch: Trajectory, cfg: TermsConfig) -> dict:
    """Every quantity of one continuous ACER update on a (T, B) batch; ``loss`` is what to minimise
    (autograd through ``ModuleSDN``)."""
    sdn = ModuleSDN(net, avg)
    T, B = batch.rewards.shape
    M = T * B
    obs = batch.obs.reshape((T + 1) * B, *batch.obs.shape[2:])
    v_all = sdn.values(torch.cat([obs, batch.final_obs]) if len(batch.final_t) else obs)
    nv = next_values(v_all[: (T + 1) * B].detach().view(T + 1, B), v_all[(T + 1) * B :].detach(),
                     batch.final_t, batch.final_b)
    V = v_all[:M].view(T, B)
    mean_all, log_std_p = sdn.policy(obs[:M])
    D = mean_all.shape[-1]
    mean = mean_all.view(T, B, D)
    pi_d = DiagGaussian(mean.detach(), log_std_p.detach())
    mu = DiagGaussian(batch.stats["mean"], batch.stats["log_std"])
    a = batch.actions.float()
    logp_a, score_a = pi_d.log_prob_and_grad(a)           # log f(a_t|φ), ∇_φ log f(a_t|φ)
    log_rho = logp_a - mu.log_prob(a)
    rho = log_rho.exp()  # ρ_t
    with torch.no_grad():
        eps = torch.randn(1 + cfg.sdn_samples, T, B, D, device=pi_d.mean.device)
        samples = pi_d.mean + pi_d.std * eps  # a'_t, u_1..u_n ~ π
    acts = torch.cat([a.unsqueeze(0), samples]).view(2 + cfg.sdn_samples, M, D)
    A = sdn.advantage(acts).view(2 + cfg.sdn_samples, T, B)
    A_mean = A[2:].mean(0)  # (1/n) Σ A(s, u_i)
    q_a, q_ap = V + A[0] - A_mean, V + A[1] - A_mean  # Q̃(s, a_t), Q̃(s, a'_t)
    if cfg.retrace:
        c_ret = cfg.lambda_retrace * (log_rho / D).clamp(max=0.0).exp()  # λ min(1, ρ^{1/d})
        args = (batch.terminated, batch.episode_end, cfg.gamma)
        q_ret = retrace(batch.rewards, q_a.detach(), nv, c_ret, *args)
        q_opc = retrace(batch.rewards, q_a.detach(), nv, torch.ones_like(c_ret), *args)
    else:
        q_ret = q_opc = batch.rewards + cfg.gamma * (1.0 - batch.terminated) * nv

    # g: the gradient of the objective w.r.t. φ = (μ, log σ) of f(·|φ) = π(·|s_t), in closed form
    Vd = V.detach()
    adv = q_opc - Vd
    if cfg.truncation:
        weight = rho.clamp(max=cfg.c)  # min(c, ρ_t)
        a_p = samples[0]
        logp_ap, score_ap = pi_d.log_prob_and_grad(a_p)   # log f(a'_t|φ), ∇_φ log f(a'_t|φ)
        rho_p = (logp_ap - mu.log_prob(a_p)).exp()  # ρ'_t
        bc_w = (1.0 - cfg.c / rho_p).clamp(min=0.0) * (q_ap.detach() - Vd)
        bc = bc_w * logp_ap
    else:
        weight, bc = rho, torch.zeros_like(rho)
    g_mean, g_log_std = ((weight * adv).unsqueeze(-1) * s for s in score_a)
    if cfg.truncation:   # + the bias correction's (1 − c/ρ'_t)₊ (Q̃(s_t, a'_t) − V(s_t)) ∇_φ log f(a'_t|φ)
        g_mean, g_log_std = g_mean + bc_w.unsqueeze(-1) * score_ap[0], g_log_std + bc_w.unsqueeze(-1) * score_ap[1]
    pg = weight * adv * logp_a + bc
    entropy = pi_d.entropy()
    g = torch.cat([g_mean, g_log_std + cfg.ent_coef], -1)   # ∇_log σ H = 1
    # k = ∇_φ KL(f(·|φ_avg) ‖ f(·|φ)), in closed form
    with torch.no_grad():
        m_avg, ls_avg = sdn.avg_policy(obs[:M])
        f_avg = DiagGaussian(m_avg.view(T, B, D), ls_avg)
    kl = f_avg.kl(pi_d)
    k = torch.cat(f_avg.kl_grad(pi_d), -1)
    z, tr = tr_diagnostics(g, k, cfg.delta, cfg.trust_region)
    phi = torch.cat([mean, log_std_p.expand_as(mean)], -1)
    policy_loss = -(phi * z).sum(-1).mean()  # back-propagates z* through φ
    q_loss = 0.5 * (q_ret - q_a).pow(2).mean()
    v_target = rho.clamp(max=1.0) * (q_ret - q_a.detach()) + Vd
    v_loss = 0.5 * (v_target - V).pow(2).mean()
    diag = {
        "pg_loss": -pg.detach().mean(),
        "q_loss": q_loss.detach(),
        "entropy": entropy.detach().mean(),
        "mean_rho": rho.mean(),
        "frac_truncated": (rho > cfg.c).float().mean(),
        "kl_avg": kl.detach().mean(),
        **tr,
        "v_loss": v_loss.detach(),
    }
    return {
        "loss": policy_loss + cfg.q_coef * (q_loss + v_loss),
        "diag": diag,
        "q_ret": q_ret,
        "q_opc": q_opc,
        "weight": weight,
        "bc": bc.detach(),
        "g": g,
        "k": k,
        "z": z,
        "V": Vd,
        "rho": rho,
    }
