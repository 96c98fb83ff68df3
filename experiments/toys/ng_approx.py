"""How well do conjugate gradient and K-FAC approximate the natural gradient, and at what cost?
(seed §4.5.2: natural-gradient methods avoid forming and inverting F) — claim C8.

A softmax policy π_θ(a|s) = softmax(MLP_θ(s)) (8 inputs, two tanh layers of ``WIDTHS`` units, 4
actions) on S = 512 random states, and a fixed random advantage A(s, a): the policy gradient
g = ∇_θ (1/S) Σ_s Σ_a π_θ(a|s) A(s, a). Where the exact Fisher can be formed,

    F = (1/S) Σ_s J_sᵀ (diag p_s − p_s p_sᵀ) J_s,   J_s = ∂ logits(s) / ∂θ   (float64),

the damped natural gradient u = (F + λI)⁻¹ g is the reference (λ over ``DAMPINGS``), and each approximation d is scored
by its cosine with u and ‖d − u‖ / ‖u‖:

* ``gradient``: d = g (what the natural gradient improves on);
* ``cg``: ``CG_STEPS`` steps of conjugate gradient on (F + λI) s = g with Fisher-vector products by
  double back-propagation through the KL (``algorithms.core.fisher``: what our NPG / TRPO run);
* ``kfac``: ``algorithms.core.kfac.KFACFisher``, (G + √λI)⁻¹ ∇W (A + √λI)⁻¹ per layer, G with the
  exact expectation over actions (each state once per action, weighted by π(a|s)).

Cost, counted in floating-point operations (not seconds: the verdict must not depend on the
machine; wall times are recorded beside them): forming F costs S·n_A·P² and solving it P³/3
(Cholesky); a Fisher-vector product ≈ 4 passes through the network (≈ 8·S·P); K-FAC forms its
factors (Σ_l S·n_A·(in_l² + out_l²)), inverts them (Σ_l (in_l³ + out_l³)/3·2) and applies them
(Σ_l 2·out_l·in_l·(in_l + out_l)).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from algorithms.core.distributions import Categorical
from algorithms.core.fisher import cg, flat_grad, kl_hessian_fvp
from algorithms.core.kfac import KFACFisher

WIDTHS = (16, 32, 64)
SEEDS = 5
N_STATES, OBS, N_ACT = 512, 8, 4
DAMPINGS = (1e-3, 1e-1)   # λ: near the undamped F⁻¹g, and NPG / TRPO's cg_damping (rl-zoo 0.1)
CG_STEPS = 10
COLUMNS = ["width", "n_params", "seed", "damping", "method", "cosine", "rel_err", "flops", "flops_exact", "seconds"]


def policy(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(OBS, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, N_ACT))


def exact_fisher(net: nn.Sequential, obs: torch.Tensor) -> torch.Tensor:
    """F = (1/S) Σ_s J_sᵀ (diag p − p pᵀ) J_s in float64 (J from torch.func)."""
    from torch.func import functional_call, jacrev, vmap

    names = [n for n, _ in net.named_parameters()]
    params = {n: p.detach().double() for n, p in net.named_parameters()}
    net64 = net.double()
    try:
        def logits(flat: dict, s: torch.Tensor) -> torch.Tensor:
            return functional_call(net64, flat, (s[None],))[0]
        J = vmap(jacrev(logits), in_dims=(None, 0))(params, obs.double())
        J = torch.cat([J[n].reshape(len(obs), N_ACT, -1) for n in names], -1)        # S × n_A × P
        with torch.no_grad():
            p = torch.softmax(net64(obs.double()), -1)
    finally:
        net.float()
    M = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    return torch.einsum("sap,sab,sbq->pq", J, M, J) / len(obs)


def kfac_exact_over_actions(net: nn.Module, obs: torch.Tensor, damping: float = DAMPINGS[0]) -> KFACFisher:
    """K-FAC factors with the exact expectation over actions for G: every state once per action a,
    the sum of √(n_A π(a|s)) log π(a|s) back-propagated, so that the hook's mean of g gᵀ over the
    S·n_A rows is (1/S) Σ_s Σ_a π(a|s) g gᵀ."""
    kf = KFACFisher(net, damping=damping)
    n_act = kf.layers[-1].out_features   # the logits layer
    rep = obs.repeat_interleave(n_act, 0)
    acts = torch.arange(n_act).repeat(len(obs))

    def weighted_log_probs() -> torch.Tensor:
        logp = torch.log_softmax(net(rep), -1).gather(1, acts[:, None])[:, 0]
        return ((n_act * logp.detach().exp()).sqrt() * logp).sum()
    kf.record(weighted_log_probs)
    return kf


def kfac_direction(net: nn.Sequential, obs: torch.Tensor, g: torch.Tensor, damping: float) -> torch.Tensor:
    """K-FAC's (A ⊗ G + ...)⁻¹ g, G with the exact expectation over actions."""
    kf = kfac_exact_over_actions(net, obs, damping)
    grads, i = {}, 0
    for m in kf.layers:
        nw, nb = m.weight.numel(), m.bias.numel()
        grads[m] = (g[i:i + nw].view_as(m.weight), g[i + nw:i + nw + nb])
        i += nw + nb
    nat = kf.natural_gradient(grads)
    return torch.cat([torch.cat([w_.reshape(-1), b_]) for w_, b_ in (nat[m] for m in kf.layers)])


def flops(net: nn.Sequential, method: str, n_params: int) -> float:
    S, P = N_STATES, n_params
    if method == "exact":
        return S * N_ACT * P ** 2 + P ** 3 / 3
    if method == "gradient":
        return 0.0
    if method == "cg":
        return CG_STEPS * 8 * S * P
    dims = [(m.in_features + 1, m.out_features) for m in net if isinstance(m, nn.Linear)]
    return sum(S * N_ACT * (i * i + o * o) + 2 * (i ** 3 + o ** 3) / 3 + 2 * o * i * (i + o) for i, o in dims)


def one(width: int, seed: int, dampings: float | tuple[float, ...]) -> list[dict]:
    """The rows of one policy (``width``, ``seed``) at each damping λ: F is formed once and solved by
    Cholesky for every λ (F + λI is symmetric positive definite); the exact method's ``seconds`` is
    the forming time plus that λ's solve, the cost of the exact step at one λ."""
    torch.manual_seed(seed)
    net = policy(width)
    params = list(net.parameters())
    P = sum(p.numel() for p in params)
    obs = torch.randn(N_STATES, OBS)
    adv = torch.randn(N_STATES, N_ACT)
    g = flat_grad((torch.softmax(net(obs), -1) * adv).sum(-1).mean(), params)

    t0 = time.perf_counter()
    F = exact_fisher(net, obs)
    t_form = time.perf_counter() - t0

    def row(damping: float, method: str, cosine: float, rel_err: float, seconds: float) -> dict:
        return {"width": width, "n_params": P, "seed": seed, "damping": damping, "method": method,
                "cosine": cosine, "rel_err": rel_err, "flops": flops(net, method, P),
                "flops_exact": flops(net, "exact", P), "seconds": seconds}

    rows = []
    for damping in (dampings if isinstance(dampings, tuple) else (dampings,)):
        t0 = time.perf_counter()
        L = torch.linalg.cholesky(F + damping * torch.eye(P, dtype=F.dtype))
        u = torch.cholesky_solve(g.double()[:, None], L)[:, 0]           # u = (F + λI)⁻¹ g
        t_exact = t_form + time.perf_counter() - t0

        t0 = time.perf_counter()
        logits = net(obs)
        old = Categorical(logits.detach())
        kl = old.kl(Categorical(logits)).mean()
        d_cg, _ = cg(kl_hessian_fvp(kl, params, damping), g, CG_STEPS)
        t_cg = time.perf_counter() - t0

        t0 = time.perf_counter()
        d_kfac = kfac_direction(net, obs, g, damping)
        t_kfac = time.perf_counter() - t0

        for method, d, secs in (("gradient", g, 0.0), ("cg", d_cg, t_cg), ("kfac", d_kfac, t_kfac)):
            d = d.detach().double()
            cosine, rel_err = float(d @ u / (d.norm() * u.norm())), float((d - u).norm() / u.norm())
            rows.append(row(damping, method, cosine, rel_err, secs))
        rows.append(row(damping, "exact", 1.0, 0.0, t_exact))
    return rows


def experiment(widths: tuple[int, ...] = WIDTHS, seeds: int = SEEDS, dampings: tuple[float, ...] = DAMPINGS
               ) -> list[dict]:
    """Every (λ, width, seed) row, λ outermost; each policy's F formed once for all λ."""
    rows = [r for w in widths for s in range(seeds) for r in one(w, s, tuple(dampings))]
    return sorted(rows, key=lambda r: dampings.index(r["damping"]))   # stable: width, seed, method kept


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.toys.ng_approx", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, default=SEEDS)
    a = p.parse_args(argv)
    from experiments.io import write_csv_atomic

    torch.set_num_threads(1)
    a.out.mkdir(parents=True, exist_ok=True)
    rows = experiment(seeds=a.seeds)
    write_csv_atomic(a.out / "ng_approx.csv", rows, COLUMNS)
    for lam in DAMPINGS:
        for w in WIDTHS:
            for m in ("gradient", "cg", "kfac"):
                r = [x for x in rows if x["width"] == w and x["method"] == m and x["damping"] == lam]
                print(f"λ {lam:g} width {w:>3} (P = {r[0]['n_params']:>5}) {m:>8}: cosine min "
                      f"{min(x['cosine'] for x in r):.3f} median {np.median([x['cosine'] for x in r]):.3f}; "
                      f"flops / exact {r[0]['flops'] / r[0]['flops_exact']:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
