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
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from algorithms.core.acer_ops import TermsConfig, next_values, retrace, tr_diagnostics
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
        act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
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


def continuous_terms(net: SDNet, avg: SDNet, batch: Trajectory, cfg: TermsConfig) -> dict:
    """Every quantity of one continuous ACER update on a (T, B) batch; ``loss`` is what to minimise."""
    T, B = batch.rewards.shape
    M = T * B
    obs = batch.obs.reshape((T + 1) * B, *batch.obs.shape[2:])
    h_all = net.critic_features(torch.cat([obs, batch.final_obs]) if len(batch.final_t) else obs)
    v_all = net.v(h_all).squeeze(-1)
    nv = next_values(v_all[: (T + 1) * B].detach().view(T + 1, B), v_all[(T + 1) * B :].detach(),
                     batch.final_t, batch.final_b)
    V = v_all[:M].view(T, B)
    pi = net.dist(obs[:M])
    D = pi.mean.shape[-1]
    mean, log_std = pi.mean.view(T, B, D), pi.log_std.reshape(T, B, D)
    pi_d = DiagGaussian(mean.detach(), log_std.detach())
    mu = DiagGaussian(batch.stats["mean"], batch.stats["log_std"])
    a = batch.actions.float()
    log_rho = pi_d.log_prob(a) - mu.log_prob(a)
    rho = log_rho.exp()  # ρ_t
    with torch.no_grad():
        eps = torch.randn(1 + cfg.sdn_samples, T, B, D, device=pi_d.mean.device)
        samples = pi_d.mean + pi_d.std * eps  # a'_t, u_1..u_n ~ π
    acts = torch.cat([a.unsqueeze(0), samples]).view(2 + cfg.sdn_samples, M, D)
    A = net.advantage(h_all[:M], acts).view(2 + cfg.sdn_samples, T, B)
    A_mean = A[2:].mean(0)  # (1/n) Σ A(s, u_i)
    q_a, q_ap = V + A[0] - A_mean, V + A[1] - A_mean  # Q̃(s, a_t), Q̃(s, a'_t)
    if cfg.retrace:
        c_ret = cfg.lambda_retrace * (log_rho / D).clamp(max=0.0).exp()  # λ min(1, ρ^{1/d})
        args = (batch.terminated, batch.episode_end, cfg.gamma)
        q_ret = retrace(batch.rewards, q_a.detach(), nv, c_ret, *args)
        q_opc = retrace(batch.rewards, q_a.detach(), nv, torch.ones_like(c_ret), *args)
    else:
        q_ret = q_opc = batch.rewards + cfg.gamma * (1.0 - batch.terminated) * nv

    # the objective as a function of φ = (mean, log σ), for its per-step gradient g
    phi = torch.cat([mean, log_std], -1).detach().requires_grad_(True)
    f = DiagGaussian(phi[..., :D], phi[..., D:])
    Vd = V.detach()
    if cfg.truncation:
        weight = rho.clamp(max=cfg.c)  # min(c, ρ_t)
        a_p = samples[0]
        rho_p = (pi_d.log_prob(a_p) - mu.log_prob(a_p)).exp()  # ρ'_t
        bc = (1.0 - cfg.c / rho_p).clamp(min=0.0) * (q_ap.detach() - Vd) * f.log_prob(a_p)
    else:
        weight, bc = rho, torch.zeros_like(rho)
    pg = weight * (q_opc - Vd) * f.log_prob(a) + bc
    entropy = f.entropy()
    g = torch.autograd.grad((pg + cfg.ent_coef * entropy).sum(), phi)[0]
    with torch.no_grad():
        pa = avg.dist(obs[:M])
        f_avg = DiagGaussian(pa.mean.view(T, B, D), pa.log_std.reshape(T, B, D))
    kl = f_avg.kl(f)
    k = torch.autograd.grad(kl.sum(), phi)[0]  # ∇_φ KL(f_avg ‖ f)
    z, tr = tr_diagnostics(g, k, cfg.delta, cfg.trust_region)
    policy_loss = -(torch.cat([mean, log_std], -1) * z).sum(-1).mean()  # back-propagates z* through φ
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
