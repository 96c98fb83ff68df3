"""The seed's toy experiments: their claims, their math against independent oracles, their CSVs."""
from __future__ import annotations

import csv
import math

import numpy as np
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

def perturbed_theta(seed: int = 0) -> np.ndarray:
    return npg.initial_theta() + np.random.default_rng(seed).normal(0, 0.5, (npg.N_STATES, 2))


def test_exact_gradient_matches_finite_differences():
    mdp, theta = npg.chain_mdp(), perturbed_theta()
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


def test_natural_gradient_is_the_advantage():
    """Kakade 2001, tabular softmax: F⁺g = A(s, ·)/(1 − γ) up to a constant per state."""
    mdp, theta = npg.chain_mdp(), perturbed_theta(2)
    ev = npg.evaluate(theta, mdp)
    u = npg.direction("npg", ev).reshape(theta.shape)
    A = (ev["Q"] - ev["V"][:, None]) / (1 - npg.GAMMA)
    centred = [x - x.mean(1, keepdims=True) for x in (u, A)]
    np.testing.assert_allclose(*centred, rtol=1e-6, atol=1e-8)


def test_npg_reaches_the_target_in_fewer_iterations_than_pg():
    rows, summary = npg.experiment()
    by = {r["method"]: r for r in summary}
    J_opt = npg.GAMMA ** (npg.N_STATES - 1) / (1 - npg.GAMMA)        # walk right, then stay
    assert by["npg"]["J_opt"] == pytest.approx(J_opt, rel=1e-12)
    assert by["npg"]["iterations_to_target"] != "" and by["pg"]["iterations_to_target"] != ""
    assert by["npg"]["iterations_to_target"] < by["pg"]["iterations_to_target"]
    for m in ("pg", "npg"):
        assert by[m]["final_J"] == pytest.approx(J_opt, rel=1e-6)
    J = [r["J"] for r in rows if r["method"] == "npg"]
    assert all(b >= a - 1e-12 for a, b in zip(J, J[1:]))                 # NPG improves monotonically


def test_both_methods_take_the_same_kl_step():
    """Fairness: every step has the same quadratic-model KL δ, whatever the direction."""
    ev = npg.evaluate(perturbed_theta(3), npg.chain_mdp())
    for m in npg.METHODS:
        step = npg.kl_step(npg.direction(m, ev), ev["F"], npg.DELTA)
        assert 0.5 * step @ ev["F"] @ step == pytest.approx(npg.DELTA, rel=1e-9)


def test_npg_vs_pg_csvs(tmp_path):
    assert npg.main(["--out", str(tmp_path), "--max-iter", "30"]) == 0
    cols, rows = read_csv(tmp_path / "npg_vs_pg.csv")
    assert cols == ["method", "iter", "J"]
    assert [r["iter"] for r in rows if r["method"] == "pg"] == [str(i) for i in range(31)]
    cols, rows = read_csv(tmp_path / "npg_vs_pg_summary.csv")
    assert cols == ["method", "iterations_to_target", "target", "final_J", "J_opt"]
    assert [r["method"] for r in rows] == ["pg", "npg"]
