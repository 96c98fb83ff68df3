"""Continuous ACER's update written out in NumPy, for MLP trunks on the CPU (issue 17).

Why. On a 64-unit SDN an ACER update is ≈ 450 small array operations on 80 states (7 actions each
through A(s, a)) and a few dozen matrix products: torch's per-operation dispatch (≈ 1–2 µs) cost
more than the arithmetic, where NumPy's ufuncs take 0.2–0.5 µs (issue 17's closing note, session 31).

What. The same quantities as ``acer_continuous.continuous_terms`` — the same equations, the same
draws (a'_t and the SDN's u_i come from torch's generator, as there) — and the gradient of the same
loss w.r.t. θ, written into ``FlatParams.grad`` through NumPy views of it:

    forward   V(s), μ(s) and μ_avg(s) through the trunks;  A(s, a_k) for a_t, a'_t, u_1..u_n
    terms     ρ_t, Q̃, Q^ret and Q^opc (one backward recursion for both), g, k, z* (as the module
              docstring of ``acer_continuous``)
    backward  ∂loss/∂(μ, log σ, V, A) in closed form, then through the layers
              (∂L/∂W = (∂L/∂z)ᵀ h, ∂L/∂b = Σ_i ∂L/∂z_i, ∂L/∂h = (∂L/∂z) W; f′ = 1 − h² or 1[h > 0])

For a'_t = μ + σ ε₀ the standardised action (a'_t − μ)/σ is ε₀ itself, so log f(a'_t|φ) and its
score use ε₀ directly. Other float rounding than the torch version, so a continuous ACER run is a
new sample of the same algorithm (a deliberate change of numerics). ``tests/test_acer_numpy.py``
checks every gradient, term and diagnostic against ``continuous_terms`` with autograd (all eight
ablation combinations, tanh and ReLU, depth 0–3, with terminations and truncations), the
recursion against the direct sum, and ACER trained through this path against the autograd path.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from algorithms.acer_continuous import SDNet
from algorithms.core.acer_ops import TermsConfig
from algorithms.core.distributions import LOG_2PI
from algorithms.core.explicit import FlatParams, layers
from algorithms.core.fast import activate_
from algorithms.core.nets import linear_stack
from algorithms.core.replay import Trajectory

HALF_LOG_2PI = 0.5 * LOG_2PI


@dataclass
class NpLayer:
    """One linear layer as NumPy views of θ and of its gradient: z = h Wᵀ + b, then f."""

    W: np.ndarray      # (out, in)
    Wt: np.ndarray     # its transpose (a view)
    b: np.ndarray      # (1, out)
    dW: np.ndarray
    db: np.ndarray     # (out,)
    act: str


def np_layers(trunk: nn.Module, head: nn.Linear | None, flat: FlatParams) -> list[NpLayer]:
    return [NpLayer(L.W.numpy(), L.W.numpy().T, L.b.numpy().reshape(1, -1), L.dW.numpy(), L.db.numpy(), L.act)
            for L in layers(trunk, head, flat)]


def forward(net: list[NpLayer], x: np.ndarray) -> list[np.ndarray]:
    """[h_0 = x, h_1, …, h_L]: every layer's output, kept for ``backward``."""
    hs = [x]
    for L in net:
        z = np.dot(hs[-1], L.Wt)
        z += L.b
        hs.append(activate_(z, L.act))
    return hs


def activation_backward(d: np.ndarray, h: np.ndarray, act: str) -> np.ndarray:
    """∂L/∂z = ∂L/∂h ⊙ f′(z) from h = f(z): 1 − h² (tanh), 1[h > 0] (ReLU); a new array (one temporary)."""
    if act == "tanh":
        f = h * h
        np.subtract(1.0, f, out=f)
        f *= d
        return f
    if act == "relu":
        return d * (h > 0)
    return d


def backward(net: list[NpLayer], hs: list[np.ndarray], d: np.ndarray, input_grad: bool = False) -> np.ndarray | None:
    """∂L/∂W_l, ∂L/∂b_l of every layer into its gradient views, given ∂L/∂h_L = ``d``; with ``input_grad``,
    return ∂L/∂h_0."""
    for l in range(len(net) - 1, -1, -1):
        L = net[l]
        d = activation_backward(d, hs[l + 1], L.act)
        np.dot(d.T, hs[l], out=L.dW)
        np.add.reduce(d, 0, out=L.db)
        if l or input_grad:
            d = np.dot(d, L.W)
    return d if input_grad else None


def retrace_pair(rewards: np.ndarray, q_taken: np.ndarray, next_values: np.ndarray, c: np.ndarray,
                 terminated: np.ndarray, episode_end: np.ndarray, gamma: float) -> np.ndarray:
    """Q^ret for each trace coefficient c[j] (J, T, B) at once, by the backward recursion

        Q^ret_t = r_t + γ (1 − d_t) V(s_{t+1}) + w_t (Q^ret_{t+1} − Q(s_{t+1}, a_{t+1})),
        w_t = γ (1 − d_t)(1 − e_t) c_{t+1}  (0 at t = T − 1)

    (``acer_ops.retrace``'s definition; d = terminated, e = episode end). Returns (J, T, B)."""
    (T, B), J = rewards.shape, c.shape[0]
    keep = gamma * (1.0 - terminated)
    w = np.swapaxes(c[:, 1:], 0, 1) * (keep[:-1] * (1.0 - episode_end[:-1]))[:, None]   # (T − 1, J, B)
    q = np.empty((T, J, B), np.result_type(rewards, c))                                 # (T, J, B): q[t] contiguous
    q[:] = (rewards + keep * next_values)[:, None]
    q[:-1] -= w * q_taken[1:, None]
    for t in range(T - 2, -1, -1):
        q[t] += w[t] * q[t + 1]
    return np.swapaxes(q, 0, 1)


class NumpySDN:
    """The SDNet ``net`` (θ = ``flat``) and its average (θ_avg = ``avg_flat``) as NumPy views, and one
    ACER update's gradient: ``gradient(batch, cfg)`` writes ∇_θ loss into ``flat.grad``.

    A(s, a) = w₂ᵀ f(W₁ [h_v(s); a] + b₁) + b₂ for K = n + 2 actions per state; with W₁ = [W_h  W_a]
    the state's part h_v W_hᵀ + b₁ is computed once per state:

        u_k = f(h_v W_hᵀ + b₁ + a_k W_aᵀ),   A_k = u_k w₂ + b₂
        ∂L/∂W_h = (Σ_k δ_k)ᵀ h_v,   ∂L/∂W_a = Σ_k δ_kᵀ a_k,   ∂L/∂h_v = (Σ_k δ_k) W_h + ∂L/∂V · w_V
    """

    def __init__(self, net: SDNet, avg: SDNet, flat: FlatParams, avg_flat: FlatParams) -> None:
        self.pi = np_layers(net.pi_trunk, net.mean, flat)
        self.v_trunk = np_layers(net.v_trunk, None, flat)
        self.v = np_layers(nn.Sequential(), net.v, flat)[0]
        self.adv = np_layers(net.adv, None, flat)          # [W₁, w₂]
        self.avg_pi = np_layers(avg.pi_trunk, avg.mean, avg_flat)
        L1, D = self.adv[0], net.mean.out_features
        d = L1.W.shape[1] - D
        self.W_h, self.W_a, self.dW_h, self.dW_a = L1.W[:, :d], L1.W[:, d:], L1.dW[:, :d], L1.dW[:, d:]
        self.log_std, self.avg_log_std = net.log_std.detach().numpy(), avg.log_std.detach().numpy()
        self.d_log_std = flat.grad_of[id(net.log_std)].numpy()
        self.grad = flat.grad.numpy()

    @staticmethod
    def supports(net: SDNet) -> bool:
        """Separate MLP trunks on CPU float32 parameters."""
        p = net.log_std
        return (net.pi_trunk is not net.v_trunk and linear_stack(net.pi_trunk) is not None
                and linear_stack(net.v_trunk) is not None and p.device.type == "cpu" and p.dtype == torch.float32)

    def gradient(self, batch: Trajectory, cfg: TermsConfig) -> dict:
        """One update's terms on a (T, B) batch, ∇_θ loss written into ``flat.grad``. Returns ``diag``
        (floats, as ``continuous_terms``' diag) and the terms (q_ret, q_opc, g, k, z, V, ρ, weight) for tests.
        ρ_t or ρ'_t may overflow to ∞ (then min(c, ρ) = c and (1 − c/ρ')₊ = 1); overflows and NaNs pass silently,
        as in torch (the runner's divergence check stops a run whose loss or parameters are not finite)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self._gradient(batch, cfg)

    def _gradient(self, batch: Trajectory, cfg: TermsConfig) -> dict:
        T, B = batch.rewards.shape
        M, n = T * B, cfg.sdn_samples
        obs = batch.obs.numpy().reshape((T + 1) * B, -1)
        F = len(batch.final_t)
        x = np.concatenate([obs, batch.final_obs.numpy().reshape(F, -1)]) if F else obs
        # forward: V of s_0..s_T and the finals, μ and μ_avg of s_0..s_{T−1}
        h_v = forward(self.v_trunk, x)
        v_all = (np.dot(h_v[-1], self.v.Wt) + self.v.b)[:, 0]
        nv = v_all[B:(T + 1) * B].reshape(T, B).copy()                        # V(s_{t+1})
        if F:
            nv[batch.final_t.numpy(), batch.final_b.numpy()] = v_all[(T + 1) * B:]
        V = v_all[:M]
        h_pi = forward(self.pi, obs[:M])
        mean = h_pi[-1]
        mean_avg = forward(self.avg_pi, obs[:M])[-1]
        log_std, D = self.log_std, mean.shape[1]
        inv_std = np.exp(-log_std)
        # ρ_t = f(a_t|φ)/μ(a_t|s_t) and ρ'_t = f(a'_t|φ)/μ(a'_t|s_t), log f(a|φ) = −½‖(a − μ)/σ‖² − Σ log σ − d/2 log 2π
        a = batch.actions.numpy().reshape(M, D)
        mu_mean, mu_log_std = batch.stats["mean"].numpy().reshape(M, D), batch.stats["log_std"].numpy().reshape(M, D)
        mu_inv_std = np.exp(-mu_log_std)
        log_norm = float(log_std.sum()) + D * HALF_LOG_2PI
        mu_log_norm = mu_log_std.sum(1) + D * HALF_LOG_2PI
        z_a = (a - mean) * inv_std
        logp_a = -0.5 * np.einsum("md,md->m", z_a, z_a) - log_norm
        z_mu = (a - mu_mean) * mu_inv_std
        log_rho = logp_a - (-0.5 * np.einsum("md,md->m", z_mu, z_mu) - mu_log_norm)
        rho = np.exp(log_rho)
        eps = torch.randn(1 + n, T, B, D).numpy().reshape(1 + n, M, D)         # the torch generator's draws
        samples = mean + np.exp(log_std) * eps                                 # a'_t, u_1..u_n ~ π
        # A(s, a_k), Q̃(s, a_t), Q̃(s, a'_t)
        L1, L2 = self.adv
        K = n + 2
        acts = np.concatenate([a[None], samples]).reshape(K * M, D)
        zs = np.dot(h_v[-1][:M], self.W_h.T)
        zs += L1.b
        u = np.dot(acts, self.W_a.T).reshape(K, M, -1)
        u += zs
        u = activate_(u.reshape(K * M, -1), L1.act)
        A = (np.dot(u, L2.Wt) + L2.b).reshape(K, M)
        A_mean = np.add.reduce(A[2:], 0) * (1.0 / n)
        q_a, q_ap = V + (A[0] - A_mean), V + (A[1] - A_mean)
        r, d, e = batch.rewards.numpy(), batch.terminated.numpy(), batch.episode_end.numpy()
        if cfg.retrace:   # Q^ret with c_i = λ min(1, ρ_i^{1/d}) and Q^opc with c ≡ 1, one recursion
            c = np.ones((2, M), np.float32)
            np.exp(np.minimum(log_rho * (1.0 / D), 0.0), out=c[0])
            c[0] *= cfg.lambda_retrace
            q_ret, q_opc = retrace_pair(r, q_a.reshape(T, B), nv, c.reshape(2, T, B), d, e, cfg.gamma).reshape(2, M)
        else:
            q_ret = q_opc = (r + cfg.gamma * (1.0 - d) * nv).reshape(M)
        # g = ∇_φ of the per-step objective, φ = (μ, log σ); scores ((a − μ)/σ², ((a − μ)/σ)² − 1)
        adv = q_opc - V
        g = np.empty((M, 2 * D), np.float32)
        if cfg.truncation:
            weight = np.minimum(rho, cfg.c)                                    # min(c, ρ_t)
            e0 = eps[0]                                                        # (a'_t − μ)/σ
            logp_ap = -0.5 * np.einsum("md,md->m", e0, e0) - log_norm
            z_mu_p = (samples[0] - mu_mean) * mu_inv_std
            rho_p = np.exp(logp_ap + 0.5 * np.einsum("md,md->m", z_mu_p, z_mu_p) + mu_log_norm)   # ρ'_t
            bc_w = np.maximum(1.0 - cfg.c / rho_p, 0.0) * (q_ap - V)            # (1 − c/ρ'_t)₊ (Q̃(s, a'_t) − V)
            wa = (weight * adv)[:, None]
            bw = bc_w[:, None]
            np.multiply(wa * z_a + bw * e0, inv_std, out=g[:, :D])
            g[:, D:] = wa * (z_a * z_a - 1.0) + bw * (e0 * e0 - 1.0)
            pg = weight * adv * logp_a + bc_w * logp_ap
        else:
            weight = rho
            wa = (weight * adv)[:, None]
            np.multiply(wa * z_a, inv_std, out=g[:, :D])
            g[:, D:] = wa * (z_a * z_a - 1.0)
            pg = weight * adv * logp_a
        g[:, D:] += cfg.ent_coef                                               # ∇_log σ H = 1
        # k = ∇_φ KL(f(·|φ_avg) ‖ f(·|φ)) = ((μ − μ_avg)/σ², 1 − (σ_avg² + (μ − μ_avg)²)/σ²)
        inv_var = inv_std * inv_std
        diff = mean - mean_avg
        diff2 = diff * diff
        k = np.empty_like(g)
        np.multiply(diff, inv_var, out=k[:, :D])
        np.subtract(1.0, (np.exp(2.0 * self.avg_log_std) + diff2) * inv_var, out=k[:, D:])
        # z* = g − max(0, (kᵀg − δ)/‖k‖²) k
        kk = np.einsum("mj,mj->m", k, k)
        coef = np.maximum(np.einsum("mj,mj->m", k, g) - cfg.delta, 0.0) / np.maximum(kk, 1e-12)
        step = coef[:, None] * k
        tr_effect = math.sqrt(float(np.einsum("mj,mj->", step, step))) / max(
            math.sqrt(float(np.einsum("mj,mj->", g, g))), 1e-12)
        z = g - step if cfg.trust_region else g
        # critic: ½ (Q^ret − Q̃(s, a_t))² and ½ (V^target − V)², V^target = min(1, ρ_t)(Q^ret − Q̃) + V
        td = q_ret - q_a
        v_err = np.minimum(rho, 1.0) * td                                      # V^target − V
        q_loss, v_loss = 0.5 * float(np.dot(td, td)) / M, 0.5 * float(np.dot(v_err, v_err)) / M
        # ∂loss/∂(μ, log σ, V, A) for loss = −mean_t φ_tᵀ z*_t + q_coef (q_loss + v_loss), then back through θ
        d_q = td * (-cfg.q_coef / M)                                          # ∂/∂Q̃(s, a_t)
        d_A = np.zeros((K, M, 1), np.float32)
        d_A[0, :, 0] = d_q
        d_A[2:, :, 0] = d_q * (-1.0 / n)
        d_V = d_q - v_err * (cfg.q_coef / M)
        self._backward(h_v, h_pi, u, acts, d_A.reshape(K * M, 1), d_V, z[:, :D] * (-1.0 / M))
        self.d_log_std[:] = z[:, D:].sum(0) * (-1.0 / M)
        # KL(f_avg ‖ f) = Σ_d [log σ − log σ_avg + (σ_avg² + (μ − μ_avg)²)/(2σ²) − ½]
        #             = Σ_d (log σ − log σ_avg − ½ k_{log σ})
        kl_avg = float(np.add.reduce(log_std - self.avg_log_std)) - 0.5 * float(np.add.reduce(k[:, D:], None)) / M
        diag = {
            "pg_loss": -float(np.add.reduce(pg)) / M, "q_loss": q_loss,
            "entropy": float(log_std.sum()) + D * (0.5 + HALF_LOG_2PI),
            "mean_rho": float(np.add.reduce(rho)) / M, "frac_truncated": float(np.count_nonzero(rho > cfg.c)) / M,
            "kl_avg": kl_avg, "k_norm": float(np.add.reduce(np.sqrt(kk))) / M,
            "tr_active_frac": float(np.count_nonzero(coef > 0)) / M, "tr_shrink": float(np.add.reduce(coef)) / M,
            "tr_effect": tr_effect, "v_loss": v_loss,
        }
        shape = (T, B)
        return {"diag": diag, "q_ret": q_ret.reshape(shape), "q_opc": q_opc.reshape(shape), "g": g.reshape(*shape, -1),
                "k": k.reshape(*shape, -1), "z": z.reshape(*shape, -1), "V": V.reshape(shape),
                "rho": rho.reshape(shape), "weight": weight.reshape(shape)}

    def clip_grad_norm(self, max_norm: float) -> float:
        """∇ ← ∇ · min(1, c / (‖∇‖₂ + 10⁻⁶)), as ``torch.nn.utils.clip_grad_norm_``; returns ‖∇‖₂. A non-finite
        norm makes every entry NaN, as torch's does (no unclipped step from the finite ones)."""
        with np.errstate(over="ignore", invalid="ignore"):
            norm = math.sqrt(float(np.dot(self.grad, self.grad)))
            coef = max_norm / (norm + 1e-6)
            if not coef >= 1.0:
                self.grad *= coef
        return norm

    def _backward(self, h_v: list[np.ndarray], h_pi: list[np.ndarray], u: np.ndarray, acts: np.ndarray,
                  d_A: np.ndarray, d_V: np.ndarray, d_mean: np.ndarray) -> None:
        """∂L/∂A (K·M, 1), ∂L/∂V (M,), ∂L/∂μ (M, D) → ∂L/∂θ (all but log σ)."""
        (L1, L2), M = self.adv, len(d_V)
        np.dot(d_A.T, u, out=L2.dW)
        L2.db[:] = d_A.sum()
        delta = activation_backward(L2.W, u, L1.act)                          # δ_k = ∂L/∂A_k w₂ ⊙ f′, (K·M, H)
        delta = delta * d_A if delta is L2.W else np.multiply(delta, d_A, out=delta)   # (never write into w₂)
        self.dW_a[:] = np.dot(delta.T, acts)
        delta_s = np.add.reduce(delta.reshape(-1, M, delta.shape[1]), 0)       # Σ_k δ_k, (M, H)
        h_last = h_v[-1][:M]
        self.dW_h[:] = np.dot(delta_s.T, h_last)
        np.add.reduce(delta_s, 0, out=L1.db)
        d_V = d_V[:, None]
        np.dot(d_V.T, h_last, out=self.v.dW)
        self.v.db[:] = d_V.sum()
        d_h = np.dot(delta_s, self.W_h)
        d_h += d_V * self.v.W
        backward(self.v_trunk, [h[:M] for h in h_v], d_h)
        backward(self.pi, h_pi, d_mean)
