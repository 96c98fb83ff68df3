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
∇_log σ H = 1, and k = ((μ − μ_avg)/σ², 1 − (σ_avg² + (μ − μ_avg)²)/σ²). The network is evaluated
by ``ModuleSDN`` (autograd through ``loss``; any trunk) or, for MLP trunks, by ``ExplicitSDN``, which
takes ``grads`` — the loss's gradients w.r.t. μ, log σ, V and A, also in closed form — back through
the layers by hand (``core/explicit.py``; tested against the autograd path).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from algorithms.core import explicit
from algorithms.core.acer_ops import TermsConfig, next_values, retrace, tr_diagnostics
from algorithms.core.activations import ACTIVATIONS
from algorithms.core.distributions import DiagGaussian
from algorithms.core.nets import is_image_space, linear_stack, make_trunk, ortho_init
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


class ExplicitSDN:
    """The same network written out (``core/explicit.py``) on θ = ``flat`` and θ_avg = ``avg_flat``,
    for MLP trunks: forward keeps every layer's output, and ``backward`` takes the gradients of the
    loss w.r.t. the network's outputs (μ, log σ, V, A) into ``flat.grad``.

    A(s, a) = w₂ᵀ f(W₁ [h_v(s); a] + b₁) + b₂ is evaluated for K actions per state; with
    W₁ = [W_h  W_a], the state's part h_v W_hᵀ + b₁ is computed once per state, not K times:

        u_k = f(h_v W_hᵀ + b₁ + a_k W_aᵀ),      A_k = u_k w₂ + b₂
        ∂L/∂W_h = (Σ_k δ_k)ᵀ h_v,   ∂L/∂W_a = Σ_k δ_kᵀ a_k,   ∂L/∂h_v = (Σ_k δ_k) W_h + ∂L/∂V · w_V
    with δ_k = ∂L/∂(pre-activation of u_k).
    """

    def __init__(self, net: SDNet, avg: SDNet, flat: explicit.FlatParams, avg_flat: explicit.FlatParams) -> None:
        self.net, self.avg, self.flat = net, avg, flat
        self.pi = explicit.layers(net.pi_trunk, net.mean, flat)
        self.v_trunk = explicit.layers(net.v_trunk, None, flat)
        self.v = explicit.layers(nn.Sequential(), net.v, flat)
        self.adv = explicit.layers(net.adv, None, flat)      # [W₁, w₂]
        d = self.adv[0].W.shape[1] - net.mean.out_features
        L1 = self.adv[0]
        self.W_h, self.W_a, self.dW_h, self.dW_a = L1.W[:, :d], L1.W[:, d:], L1.dW[:, :d], L1.dW[:, d:]
        self.avg_pi = explicit.layers(avg.pi_trunk, avg.mean, avg_flat)
        self.log_std, self.avg_log_std = net.log_std.detach(), avg.log_std.detach()
        self.d_log_std = flat.grad_of[id(net.log_std)]

    @staticmethod
    def supports(net: SDNet) -> bool:
        return (net.pi_trunk is not net.v_trunk and linear_stack(net.pi_trunk) is not None
                and linear_stack(net.v_trunk) is not None)

    def values(self, obs: torch.Tensor) -> torch.Tensor:
        self.h_v = explicit.forward(self.v_trunk, obs)
        return explicit.forward(self.v, self.h_v[-1])[-1].squeeze(-1)

    def policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.h_pi = explicit.forward(self.pi, obs)
        return self.h_pi[-1], self.log_std

    def avg_policy(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return explicit.forward(self.avg_pi, obs)[-1], self.avg_log_std

    def advantage(self, actions: torch.Tensor) -> torch.Tensor:
        (L1, L2), (K, M, D) = self.adv, actions.shape
        self.M, self.a = M, actions.reshape(K * M, D)
        z = torch.addmm(L1.b, self.h_v[-1][:M], self.W_h.t())                 # h_v W_hᵀ + b₁, once per state
        self.u = explicit.activate_((self.a @ self.W_a.t()).view(K, M, -1).add_(z), L1.act).view(K * M, -1)
        return torch.addmm(L2.b, self.u, L2.Wt).view(K, M)

    @torch.no_grad()
    def gradient(self, batch: Trajectory, cfg: TermsConfig) -> dict:
        """``continuous_terms`` of ``batch`` with ∇_θ loss written into ``flat.grad``; returns the terms."""
        out = continuous_terms(self.net, self.avg, batch, cfg, self)
        d = out["grads"]
        self.backward(d["mean"], d["log_std"], d["V"], d["A"])
        return out

    def backward(self, d_mean: torch.Tensor, d_log_std: torch.Tensor, d_V: torch.Tensor, d_A: torch.Tensor) -> None:
        """∂L/∂μ (M, D), ∂L/∂log σ (D,), ∂L/∂V (M,) for the first M rows, ∂L/∂A (K, M) → ∂L/∂θ."""
        (L1, L2), M, K = self.adv, self.M, d_A.shape[0]
        d_A = d_A.reshape(K * M, 1)
        torch.mm(d_A.t(), self.u, out=L2.dW)
        torch.sum(d_A, 0, out=L2.db)
        delta = explicit.activation_backward(d_A @ L2.W, self.u, L1.act)    # δ_k, (K·M, H)
        self.dW_a.copy_(delta.t() @ self.a)
        delta_s = delta.view(K, M, -1).sum(0)                                # Σ_k δ_k, (M, H)
        h_v = [h[:M] for h in self.h_v]
        self.dW_h.copy_(delta_s.t() @ h_v[-1])
        torch.sum(delta_s, 0, out=L1.db)
        d_h = explicit.backward(self.v, [h_v[-1], None], d_V.unsqueeze(-1), input_grad=True)
        d_h.addmm_(delta_s, self.W_h)
        explicit.backward(self.v_trunk, h_v, d_h)
        explicit.backward(self.pi, self.h_pi, d_mean)
        self.d_log_std.copy_(d_log_std)


def continuous_terms(net: SDNet, avg: SDNet, batch: Trajectory, cfg: TermsConfig,
                     sdn: ModuleSDN | ExplicitSDN | None = None) -> dict:
    """Every quantity of one continuous ACER update on a (T, B) batch. ``loss`` is what to minimise;
    ``grads`` its gradients w.r.t. the network's outputs (μ, log σ, V, A), for ``ExplicitSDN.backward``.
    ``sdn`` evaluates the network (default ``ModuleSDN``: autograd through ``loss``)."""
    sdn = sdn or ModuleSDN(net, avg)
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
    # ∂loss/∂(μ, log σ, V, A): loss = policy_loss + q_coef (q_loss + v_loss)
    d_q = (q_a.detach() - q_ret) * (cfg.q_coef / M)                  # ∂/∂Q̃(s, a_t)
    d_A = torch.zeros_like(A)
    d_A[0], d_A[2:] = d_q, -d_q / cfg.sdn_samples
    grads = {"mean": z[..., :D].reshape(M, D) / -M, "log_std": z[..., D:].sum((0, 1)) / -M,
             "V": (d_q + (Vd - v_target) * (cfg.q_coef / M)).reshape(M), "A": d_A.view(-1, M)}
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
        "grads": grads,
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
