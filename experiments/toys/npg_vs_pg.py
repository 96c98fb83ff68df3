"""Natural vs vanilla policy gradient with exact gradients and Fisher matrices (seed §4.5.2).

Kakade's (2001) setting: a tabular softmax policy π_θ(a|s) ∝ exp θ[s, a] on a small MDP,
with everything computed exactly (no sampling). The MDP is a deterministic chain of
``N_STATES`` states, actions left/right, start in state 0, discount γ; staying put at the
right end pays 1 (optionally, ``--r-left``, staying put at the left end pays a small
distractor reward, as the poorer self-loop of Kakade's two-state MDP). The initial policy
prefers "left" in every state (π(right) ≈ 0.018), so the rewarding end is rarely visited.

With ρ₀ the start distribution, P_π the state transition matrix under π, r_π the expected
reward:

    V = (I − γ P_π)⁻¹ r_π,   Q(s, a) = r(s, a) + γ Σ_s' P(s'|s, a) V(s'),   J(θ) = ρ₀ᵀ V
    d(s) = (1 − γ) [ρ₀ᵀ (I − γ P_π)⁻¹](s)                   normalised discounted visitation
    ψ_{s,a} = ∇_θ log π(a|s) = e_{s,a} − Σ_b π(b|s) e_{s,b}
    g = ∇J = 1/(1 − γ) Σ_s d(s) Σ_a π(a|s) Q(s, a) ψ_{s,a}       (policy gradient theorem)
    F = Σ_s d(s) Σ_a π(a|s) ψ_{s,a} ψ_{s,a}ᵀ                       (Fisher, Kakade 2001)

Directions: PG u = g; NPG u = F⁺ g (F is singular along adding a constant to one state's
logits, which g is orthogonal to). The vanilla gradient of a state is weighted by its
visitation d(s); the natural gradient divides that weight out (F⁺g = A/(1 − γ) per state).

Fairness: both methods take the *same* step rule, the trust region of NPG/TRPO,
Δθ = √(2δ / uᵀ F u) · u, so every step moves the policy by the same quadratic-model KL δ
and only the direction differs (a tuned fixed step size would instead reward whichever
method's gradient happens to have the right scale). Deterministic: no sampling, no RNG.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from experiments.io import write_csv_atomic

N_STATES = 6
GAMMA = 0.9
R_LEFT = 0.0            # reward for staying at the left end (the optional distractor)
DELTA = 0.01            # δ, the per-step KL budget shared by both methods
THETA0_BIAS = 2.0       # initial logits: +bias for left, −bias for right → π(right) ≈ 0.018
TARGET_FRACTION = 0.9   # target J = J(θ₀) + 0.9 (J_opt − J(θ₀))
MAX_ITER = 200
SATURATION_TOL = 1e-8   # F̂_s eigenvalues below this count as zero (deterministic state)
STATIONARY_TOL = 1e-12  # ‖u‖ below this: a stationary point, no step
METHODS = ("pg", "npg")
LEFT, RIGHT = 0, 1


def chain_mdp(n: int = N_STATES, r_left: float = R_LEFT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P[s, a, s'], r[s, a], ρ₀) of the chain."""
    P = np.zeros((n, 2, n))
    r = np.zeros((n, 2))
    for s in range(n):
        P[s, LEFT, max(s - 1, 0)] = 1.0
        P[s, RIGHT, min(s + 1, n - 1)] = 1.0
    r[0, LEFT] = r_left
    r[n - 1, RIGHT] = 1.0
    rho0 = np.zeros(n)
    rho0[0] = 1.0
    return P, r, rho0


def initial_theta(n: int = N_STATES, bias: float = THETA0_BIAS) -> np.ndarray:
    theta = np.zeros((n, 2))
    theta[:, LEFT], theta[:, RIGHT] = bias, -bias
    return theta


def policy(theta: np.ndarray) -> np.ndarray:
    z = theta - theta.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def evaluate(theta: np.ndarray, mdp, gamma: float = GAMMA) -> dict:
    """Exact J, V, Q, d, g = ∇J and F of the softmax policy θ (shape S × A)."""
    P, r, rho0 = mdp
    S, A = r.shape
    pi = policy(theta)
    P_pi = np.einsum("sa,sat->st", pi, P)
    r_pi = (pi * r).sum(1)
    M = np.eye(S) - gamma * P_pi
    V = np.linalg.solve(M, r_pi)
    Q = r + gamma * P @ V
    d = (1 - gamma) * np.linalg.solve(M.T, rho0)
    # ψ[s, a, (s', b)] = ∇_θ[s', b] log π(a|s) = [s' = s] ([b = a] − π(b|s))
    psi = np.einsum("st,ab->satb", np.eye(S), np.eye(A)) - np.einsum("st,tb->stb", np.eye(S), pi)[:, None]
    psi = psi.reshape(S, A, S * A)
    w = d[:, None] * pi                                         # d(s) π(a|s)
    g = np.einsum("sa,sa,sap->p", w, Q, psi) / (1 - gamma)
    F = np.einsum("sa,sap,saq->pq", w, psi, psi)
    return {"J": float(rho0 @ V), "V": V, "Q": Q, "d": d, "pi": pi, "g": g, "F": F}


def optimal_return(mdp, gamma: float = GAMMA, iters: int = 10_000) -> float:
    """J_opt: value iteration for the greedy policy, then its exact return."""
    P, r, _ = mdp
    V = np.zeros(r.shape[0])
    for _ in range(iters):
        V_new = (r + gamma * P @ V).max(1)
        done = np.max(np.abs(V_new - V)) < 1e-12
        V = V_new
        if done:
            break
    greedy = (r + gamma * P @ V).argmax(1)
    theta = np.full(r.shape, -np.inf)
    theta[np.arange(r.shape[0]), greedy] = 0.0
    return evaluate(theta, mdp, gamma)["J"]


def direction(method: str, ev: dict) -> np.ndarray:
    """PG: u = g. NPG: u = F⁺ g, solved per state on F's diagonal blocks F_s = d(s) F̂_s.

    F̂_s = diag π_s − π_s π_sᵀ has eigenvalues 0 (adding a constant to the state's logits)
    and 2π(1 − π) (two actions). Eigenvalues of F̂_s below ``SATURATION_TOL`` are treated as
    zero: a state whose policy is deterministic to that precision is left as it is, instead
    of dividing rounding noise in g by a vanishing curvature.
    """
    if method == "pg":
        return ev["g"]
    S, A = ev["pi"].shape
    idx = np.arange(S)
    d = np.where(ev["d"] > 0, ev["d"], 1.0)       # an unreachable state has F_s = 0, g_s = 0
    blocks = ev["F"].reshape(S, A, S, A)[idx, :, idx, :] / d[:, None, None]     # F̂_s
    g_s = ev["g"].reshape(S, A) / d[:, None]
    lam, vec = np.linalg.eigh(blocks)
    inv = np.where(lam > SATURATION_TOL, 1.0 / np.where(lam > SATURATION_TOL, lam, 1.0), 0.0)
    return np.einsum("sij,sj,skj,sk->si", vec, inv, vec, g_s).reshape(-1)


def kl_step(u: np.ndarray, F: np.ndarray, delta: float) -> np.ndarray:
    """Δθ = √(2δ / uᵀFu) u, the step whose quadratic KL model ½ΔθᵀFΔθ equals δ. At a
    stationary point (‖u‖ ≤ ``STATIONARY_TOL``) no step is taken rather than blowing
    rounding noise up to a KL of δ."""
    uFu = float(u @ F @ u)
    if not np.linalg.norm(u) > STATIONARY_TOL or not uFu > 0:
        return np.zeros_like(u)
    return np.sqrt(2 * delta / uFu) * u


def train(method: str, mdp=None, theta0: np.ndarray | None = None, delta: float = DELTA,
          max_iter: int = MAX_ITER, gamma: float = GAMMA) -> list[float]:
    """J after 0, 1, …, max_iter trust-region steps of ``method``."""
    mdp = chain_mdp() if mdp is None else mdp
    theta = (initial_theta() if theta0 is None else theta0).copy()
    returns = []
    for _ in range(max_iter + 1):
        ev = evaluate(theta, mdp, gamma)
        returns.append(ev["J"])
        theta = theta + kl_step(direction(method, ev), ev["F"], delta).reshape(theta.shape)
    return returns


def iterations_to(returns: list[float], target: float) -> int | None:
    return next((i for i, J in enumerate(returns) if J >= target), None)


def experiment(delta: float = DELTA, max_iter: int = MAX_ITER,
               r_left: float = R_LEFT) -> tuple[list[dict], list[dict]]:
    """(curve rows, summary rows); the target is 90 % of the way from J(θ₀) to J_opt."""
    mdp = chain_mdp(r_left=r_left)
    J_opt = optimal_return(mdp)
    curves = {m: train(m, mdp, delta=delta, max_iter=max_iter) for m in METHODS}
    J0 = curves[METHODS[0]][0]
    target = J0 + TARGET_FRACTION * (J_opt - J0)
    rows = [{"method": m, "iter": i, "J": J} for m in METHODS for i, J in enumerate(curves[m])]
    summary = []
    for m in METHODS:
        n = iterations_to(curves[m], target)
        summary.append({"method": m, "iterations_to_target": "" if n is None else n, "target": target,
                        "final_J": curves[m][-1], "J_opt": J_opt})
    return rows, summary


CURVE_COLUMNS = ["method", "iter", "J"]
SUMMARY_COLUMNS = ["method", "iterations_to_target", "target", "final_J", "J_opt"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.toys.npg_vs_pg", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--delta", type=float, default=DELTA)
    p.add_argument("--max-iter", type=int, default=MAX_ITER)
    p.add_argument("--r-left", type=float, default=R_LEFT, help="distractor reward at the left end")
    a = p.parse_args(argv)
    rows, summary = experiment(a.delta, a.max_iter, a.r_left)
    write_csv_atomic(a.out / "npg_vs_pg.csv", rows, CURVE_COLUMNS)
    write_csv_atomic(a.out / "npg_vs_pg_summary.csv", summary, SUMMARY_COLUMNS)
    for s in summary:
        n = s["iterations_to_target"]
        print(f"{s['method']:>3} iterations_to_target={'-' if n == '' else n} target={s['target']:.4f} "
              f"final_J={s['final_J']:.4f} J_opt={s['J_opt']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
