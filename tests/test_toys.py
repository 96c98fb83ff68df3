"""The seed's toy experiments: their claims, their math against independent oracles, their CSVs."""
from __future__ import annotations

import csv
import math

import numpy as np
import pandas as pd
import pytest

from experiments.toys import gaussian_manifold as gm
from experiments.toys import npg_vs_pg as npg


def read_csv(path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path) as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


# --- Gaussian manifold -------------------------------------------------------------------

def test_gaussian_gradient_and_fisher_against_finite_differences():
    mu, sigma, h = 0.7, 1.9, 1e-5
    g_mu, g_sigma = gm.grad(np.array(mu), np.array(sigma))
    assert g_mu == pytest.approx((gm.loss(mu + h, sigma) - gm.loss(mu - h, sigma)) / (2 * h), rel=1e-7)
    assert g_sigma == pytest.approx((gm.loss(mu, sigma + h) - gm.loss(mu, sigma - h)) / (2 * h), rel=1e-7)

    # The Fisher is the Hessian of KL(N(μ, σ) ‖ N(μ', σ')) in (μ', σ') at (μ, σ).
    def kl(m, s):
        return math.log(s / sigma) + (sigma**2 + (mu - m) ** 2) / (2 * s**2) - 0.5

    h = 1e-4
    f_mu = (kl(mu + h, sigma) - 2 * kl(mu, sigma) + kl(mu - h, sigma)) / h**2
    f_sigma = (kl(mu, sigma + h) - 2 * kl(mu, sigma) + kl(mu, sigma - h)) / h**2
    f_cross = (kl(mu + h, sigma + h) - kl(mu + h, sigma - h)
               - kl(mu - h, sigma + h) + kl(mu - h, sigma - h)) / (4 * h**2)
    exact = gm.fisher_diag(np.array(sigma))
    assert (f_mu, f_sigma) == pytest.approx(exact, rel=1e-5) and abs(f_cross) < 1e-6


def test_ngd_needs_fewer_iterations_than_gd_from_both_starts():
    _, summary = gm.experiment()
    by = {(r["method"], r["start"]): r for r in summary}
    for start in gm.STARTS:
        ngd, gd = by[("ngd", start)], by[("gd", start)]
        assert ngd["converged"] and ngd["final_loss"] - gm.LOSS_OPT <= gm.TOL
        assert not gd["converged"] or ngd["iterations_to_tol"] < gd["iterations_to_tol"]
        # and by a wide margin (the text's claim: GD crawls on plateaus, must creep where curved)
        assert gd["converged"] and ngd["iterations_to_tol"] * 10 < gd["iterations_to_tol"]


def test_ngd_unit_step_solves_the_mean_at_once():
    """With η = 1, F⁻¹∇_μ = σ² (μ − μ*)/σ² moves μ to μ* in one step, from any σ."""
    mu, _ = gm.update("ngd", np.array(5.0), np.array(0.3), np.array(1.0))
    assert mu == gm.MU_STAR


def test_gaussian_csvs(tmp_path):
    assert gm.main(["--out", str(tmp_path)]) == 0
    cols, rows = read_csv(tmp_path / "gaussian_trajectories.csv")
    assert cols == ["method", "start", "iter", "mu", "sigma", "loss"]
    assert {(r["method"], r["start"]) for r in rows} == {(m, s) for m in ("gd", "ngd") for s in gm.STARTS}
    cols, rows = read_csv(tmp_path / "gaussian_summary.csv")
    assert cols == ["method", "start", "iterations_to_tol", "converged", "final_loss", "tol", "lr"]
    assert len(rows) == 4 and all(r["converged"] in ("True", "False") for r in rows)


# --- NPG vs PG -----------------------------------------------------------------------------

def perturbed_theta(seed: int = 0, n: int = npg.N_STATES) -> np.ndarray:
    return npg.initial_theta(n) + np.random.default_rng(seed).normal(0, 0.5, (n, 2))


@pytest.mark.parametrize("problem", ["chain", "two-state"])
def test_exact_gradient_matches_finite_differences(problem):
    mdp = npg.chain_mdp() if problem == "chain" else npg.two_state_mdp()
    theta = perturbed_theta() if problem == "chain" else npg.kakade_theta0() + 0.3
    g = npg.evaluate(theta, mdp)["g"]
    h, fd = 1e-6, np.zeros(theta.size)
    for i in range(theta.size):
        e = np.zeros(theta.size)
        e[i] = h
        fd[i] = (npg.evaluate(theta + e.reshape(theta.shape), mdp)["J"]
                 - npg.evaluate(theta - e.reshape(theta.shape), mdp)["J"]) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_fisher_is_the_hessian_of_the_visitation_weighted_kl():
    mdp, theta = npg.chain_mdp(), perturbed_theta(1)
    ev = npg.evaluate(theta, mdp)
    pi, d = ev["pi"], ev["d"]

    def mean_kl(t):
        q = npg.policy(t.reshape(theta.shape))
        return float((d * (pi * (np.log(pi) - np.log(q))).sum(1)).sum())

    dim, h = theta.size, 1e-4
    H = np.zeros((dim, dim))
    for i in range(dim):
        for j in range(dim):
            ei, ej = np.eye(dim)[i] * h, np.eye(dim)[j] * h
            t = theta.reshape(-1)
            H[i, j] = (mean_kl(t + ei + ej) - mean_kl(t + ei - ej)
                       - mean_kl(t - ei + ej) + mean_kl(t - ei - ej)) / (4 * h**2)
    np.testing.assert_allclose(ev["F"], H, atol=1e-6)


@pytest.mark.parametrize("problem", ["chain", "two-state"])
def test_natural_gradient_is_the_pseudo_inverse_fisher_times_the_gradient(problem):
    """The closed form (A − mean A)/(1 − γ) against F⁺g from the full Fisher matrix."""
    mdp = npg.chain_mdp() if problem == "chain" else npg.two_state_mdp()
    theta = perturbed_theta(2) if problem == "chain" else npg.kakade_theta0() - 0.2
    ev = npg.evaluate(theta, mdp)
    np.testing.assert_allclose(npg.direction("npg", ev), np.linalg.pinv(ev["F"], rcond=1e-12) @ ev["g"],
                               rtol=1e-6, atol=1e-9)


def test_two_state_mdp_is_kakades():
    """Self-loops pay 1 in i and 2 in j, switching pays 0; π₀ stays in i w.p. 0.8, in j w.p. 0.1;
    ρ₀ = π₀'s stationary distribution (ρ(i) = 0.9/1.1); optimum: go to j and stay."""
    P, r, rho0 = npg.two_state_mdp()
    pi0 = npg.policy(npg.kakade_theta0())
    np.testing.assert_allclose(pi0[:, npg.STAY], [0.8, 0.1])
    np.testing.assert_allclose(rho0, [0.9 / 1.1, 0.2 / 1.1])
    np.testing.assert_allclose(rho0 @ np.einsum("sa,sat->st", pi0, P), rho0)       # stationary
    for gamma in npg.TWO_STATE_GAMMAS:
        v_j = 2 / (1 - gamma)
        assert npg.optimal_return((P, r, rho0), gamma) == pytest.approx(rho0 @ [gamma * v_j, v_j], rel=1e-10)


def test_fixed_rate_npg_drastically_faster_on_kakades_problems():
    """Primary rule: each method at its best rate of one grid. PG is throttled by the visitation
    weight of its gradient; NPG is not (Kakade 2001)."""
    _, summary = npg.experiment(budget=2000, only=["two-state γ=0.9", "chain-6"])
    by = {(r["problem"], r["rule"], r["method"]): r for r in summary}
    for problem in ("two-state γ=0.9", "chain-6"):
        n_npg = by[(problem, "fixed", "npg")]["iterations_to_target"]
        n_pg = by[(problem, "fixed", "pg")]["iterations_to_target"]
        assert n_npg != "" and n_npg <= 3
        assert n_pg == "" or n_pg > 5 * n_npg
    assert by[("chain-6", "fixed", "pg")]["iterations_to_target"] == ""        # stalls within the budget
    assert by[("chain-6", "fixed", "pg")]["final_J"] < by[("chain-6", "fixed", "pg")]["target"]


def test_best_rate_is_the_fastest_of_the_grid():
    mdp, theta0 = npg.two_state_mdp(), npg.kakade_theta0()
    J0, J_opt = float(npg.values(theta0, mdp)["J"]), npg.optimal_return(mdp)
    target = J0 + npg.TARGET_FRACTION * (J_opt - J0)
    _, summary = npg.experiment(budget=500, only=["two-state γ=0.9"])
    row = next(r for r in summary if r["rule"] == "fixed" and r["method"] == "pg")
    for lr in npg.LR_GRID:       # one rate at a time: nothing faster than the reported best
        hit, _ = npg.train("pg", "fixed", mdp, theta0, npg.GAMMA, np.array([lr]), target, 500)
        assert hit[0] < 0 or hit[0] >= row["iterations_to_target"]


def test_kl_rule_takes_a_kl_delta_step_even_where_the_gradient_vanishes():
    """Every step of the secondary rule has quadratic-model KL δ (full F as the oracle), also on a
    10-state chain whose PG gradient is ~1e-17: no stationarity tolerance stops it."""
    for mdp, theta in ((npg.chain_mdp(), perturbed_theta(3)), (npg.chain_mdp(10), npg.initial_theta(10, 5.0))):
        ev = npg.evaluate(theta, mdp)
        for m in npg.METHODS:
            step = npg.kl_step(npg.direction(m, ev), ev, npg.DELTA).reshape(-1)
            assert 0.5 * step @ ev["F"] @ step == pytest.approx(npg.DELTA, rel=1e-6)
    assert np.abs(ev["g"]).max() < 1e-12


def test_npg_vs_pg_csvs(tmp_path):
    assert npg.main(["--out", str(tmp_path), "--budget", "30", "--only", "two-state γ=0.9", "chain-4"]) == 0
    cols, rows = read_csv(tmp_path / "npg_vs_pg.csv")
    assert cols == npg.CURVE_COLUMNS
    assert {(r["problem"], r["rule"], r["method"]) for r in rows} == {
        (p, rule, m) for p in ("two-state γ=0.9", "chain-4") for rule in npg.RULES for m in npg.METHODS}
    cols, rows = read_csv(tmp_path / "npg_vs_pg_summary.csv")
    assert cols == npg.SUMMARY_COLUMNS and len(rows) == 8
    assert all(r["iterations_to_target"] == "" or int(r["iterations_to_target"]) <= 30 for r in rows)


# --- claim C7: compatible function approximation ----------------------------------------


def _finite_difference_gradient(theta, mdp, gamma, h=1e-6):
    from experiments.toys.npg_vs_pg import values

    g = np.zeros(theta.size)
    for i in range(theta.size):
        e = np.zeros(theta.size)
        e[i] = h
        g[i] = (values(theta + e.reshape(theta.shape), mdp, gamma)["J"]
                - values(theta - e.reshape(theta.shape), mdp, gamma)["J"]) / (2 * h)
    return g


@pytest.mark.parametrize("which", ["two-state", "chain-4", "random"])
def test_compatible_fit_is_the_natural_gradient(which):
    """w* of the d·π-weighted least squares of Q on ψ = ∇ log π equals (1 − γ) F⁺∇J, with ∇J by
    central finite differences of the exact J (not the code's policy-gradient formula) and F⁺ the
    pseudo-inverse of the explicitly summed Fisher."""
    from experiments.toys import compatible as C
    from experiments.toys.npg_vs_pg import evaluate

    name, mdp, theta = {n: (n, m, t) for n, m, t in C.problems()}.get(which, C.problems()[0])
    if which == "random":
        theta = np.random.default_rng(3).standard_normal(theta.shape)
    ev = evaluate(theta, mdp, C.GAMMA)
    g_fd = _finite_difference_gradient(theta, mdp, C.GAMMA)
    np.testing.assert_allclose(ev["g"], g_fd, rtol=1e-5, atol=1e-9)
    want = (1 - C.GAMMA) * np.linalg.pinv(ev["F"], rcond=1e-10) @ g_fd
    np.testing.assert_allclose(C.exact_fit(ev), want, rtol=1e-4, atol=1e-8)


def test_sampled_compatible_fit_converges_in_the_fisher_norm():
    from experiments.toys import compatible as C
    from experiments.toys.npg_vs_pg import evaluate

    _, mdp, theta = C.problems()[0]
    ev = evaluate(theta, mdp, C.GAMMA)
    u = C.natural_gradient(ev, C.GAMMA)
    err = {n: np.median([C.errors(C.sampled_fit(ev, mdp, C.GAMMA, n, np.random.default_rng(s)), u, ev["F"])
                         ["f_rel_err"] for s in range(5)]) for n in (200, 20_000)}
    assert err[20_000] < 0.5 * err[200] and err[20_000] < 0.1, err


@pytest.mark.parametrize("rate, exact_err, want", [(0.5, 1e-15, ("supported", "supported")),
                                                   (0.0, 1e-15, ("supported", "not supported")),
                                                   (0.5, 1e-3, ("not supported", "supported"))])
def test_claim_c7_judges_the_exact_identity_and_the_convergence_rate(tmp_path, rate, exact_err, want):
    from analysis import synthetic
    from analysis.claims_toys import claim_c7
    from analysis.config import load_config

    d = synthetic.write_toys(tmp_path, nac_rate=rate)
    t = pd.read_csv(d / "compatible.csv")
    t.loc[t["kind"] == "exact", "rel_err"] = exact_err
    c = claim_c7(t, load_config())
    assert tuple(p.verdict for p in c.parts) == want, [(p.name, p.verdict, p.effect, p.reason) for p in c.parts]
    if rate == 0.5:
        assert c.parts[1].ci_low < 0.5 < c.parts[1].ci_high
