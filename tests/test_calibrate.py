"""Calibration of the claims' statistical tests: the permutation test against exhaustive enumeration,
the A/A false-verdict rate of every shipped design, the MDE bisection, and what a verdict does with
an uncalibrated or underpowered design."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis import calibrate, claims, stats

ROOT = Path(__file__).resolve().parent.parent
CFG = claims.load_config()
SNAPSHOT = pd.read_csv(ROOT / CFG["calibration"]["scores"])


def all_splits(nx: int, ny: int) -> np.ndarray:
    """Every assignment of nx of the nx + ny runs to x, as orders (x-slot first), identity first."""
    n = nx + ny
    out = []
    for xs in itertools.combinations(range(n), nx):
        out.append(list(xs) + [i for i in range(n) if i not in xs])
    return np.array(out)


def test_permutation_pvalue_equals_exhaustive_enumeration():
    """p_greater = #{splits with T ≥ T_obs} / #splits when the orders are all C(n, n_x) splits."""
    rng = np.random.default_rng(0)
    x, y = [rng.normal(1, 1, 3), rng.normal(0, 1, 4)], [rng.normal(0, 1, 3), rng.normal(0, 1, 4)]
    orders = [all_splits(3, 3), all_splits(4, 4)]
    # the oracle: enumerate the product of the two strata's splits directly
    for stat in ("diff", "poi"):
        def t_of(a, b, stat=stat):
            if stat == "diff":
                return a.mean() - b.mean()
            return ((a[:, None] > b[None, :]).mean() + 0.5 * (a[:, None] == b[None, :]).mean())

        per = []
        for a, b in zip(x, y):
            z = np.r_[a, b]
            per.append([t_of(z[list(xs)], np.delete(z, list(xs)))
                        for xs in itertools.combinations(range(len(z)), len(a))])
        t_all = np.add.outer(np.array(per[0]), np.array(per[1])).ravel() / 2
        t_obs = (t_of(x[0], y[0]) + t_of(x[1], y[1])) / 2
        want_g = np.mean(t_all >= t_obs - 1e-12)
        want_l = np.mean(t_all <= t_obs + 1e-12)
        # stats: the strata's orders are paired row by row, so give it the full product of splits
        o1, o2 = (np.repeat(orders[0], len(orders[1]), axis=0), np.tile(orders[1], (len(orders[0]), 1)))
        t = stats.permutation_stats([a[None] for a in x], [b[None] for b in y], stat, 0.0, [o1, o2])
        g, le = stats.permutation_pvalues(t)
        assert t[0, 0] == pytest.approx(t_obs)
        assert g[0] == pytest.approx(want_g) and le[0] == pytest.approx(want_l)


def test_permutation_stats_of_many_designs_are_each_designs_own():
    """Vectorised over designs (with a shift per design) and orders: row d, column π is T of design d
    under order π, computed here one design and one order at a time."""
    rng = np.random.default_rng(3)
    x, y = [rng.normal(size=(6, 4)), rng.normal(size=(6, 2))], [rng.normal(size=(6, 3)), rng.normal(size=(6, 5))]
    orders = stats.permutation_orders([(4, 3), (2, 5)], 40, 0)
    shift = rng.normal(size=6)
    for stat in ("diff", "poi"):
        t = stats.permutation_stats(x, y, stat, shift, orders)
        for d in range(6):
            for p in range(41):
                per = []
                for a, b, o in zip(x, y, orders):
                    z = np.r_[a[d] - shift[d], b[d]][o[p]]
                    xs, ys = z[:a.shape[1]], z[a.shape[1]:]
                    per.append(xs.mean() - ys.mean() if stat == "diff" else stats.poi(xs, ys))
                assert t[d, p] == pytest.approx(np.mean(per), abs=1e-12)


def test_poi_statistic_counts_ties_half():
    x, y = np.array([1.0, 2.0, 2.0]), np.array([2.0, 0.0, 3.0])
    t = stats.permutation_stats([x[None]], [y[None]], "poi", 0.0, [np.arange(6)[None]])
    assert t[0, 0] == pytest.approx(stats.poi(x, y)) and t[0, 0] == pytest.approx(4 / 9)


def test_smallest_design_cannot_reach_the_level():
    """3 v 3 runs in one env: the most extreme of the C(6, 3) = 20 splits has p = 1/20 > α/2 = 0.025,
    so no effect can be significant: an infinite interval and p ≈ 0.05 even for a huge effect."""
    est = stats.permutation_estimate([np.array([10.0, 11, 12])], [np.array([0.0, 1, 2])], "diff", 0, 0,
                                     stats.PermutationCfg(n_perm=8000))
    assert est.p_greater == pytest.approx(1 / 20, abs=0.008)
    assert est.lo == -math.inf and est.hi == math.inf


def test_interval_inverts_the_test_and_is_shift_equivariant():
    rng = np.random.default_rng(3)
    x, y = [rng.normal(1, 1, 6), rng.normal(1, 1, 6)], [rng.normal(0, 1, 6), rng.normal(0, 1, 6)]
    pc = stats.PermutationCfg(n_perm=2000)
    e = stats.permutation_estimate(x, y, "diff", 0, 0, pc)
    assert e.lo < e.point < e.hi
    # at the bounds the one-sided tests sit on α/2
    assert stats.permutation_estimate(x, y, "diff", e.lo - 1e-6, e.lo - 1e-6, pc).p_greater <= 0.025
    assert stats.permutation_estimate(x, y, "diff", e.lo + 1e-3, 0, pc).p_greater > 0.025
    e2 = stats.permutation_estimate([a + 5 for a in x], y, "diff", 0, 0, pc)
    assert (e2.lo, e2.hi) == pytest.approx((e.lo + 5, e.hi + 5), abs=1e-6)
    p = stats.permutation_estimate(x, y, "poi", 0.5, 0.5, pc)
    assert 0 <= p.lo <= p.point <= p.hi <= 1 and (p.lo > 0.5) == (p.p_greater <= 0.025)


def test_holm_step_down():
    assert stats.holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]  # 0.01 ≤ .05/3; 0.03 > .05/2
    assert stats.holm([0.01, 0.02, 0.04], 0.05) == [True, True, True]
    assert stats.holm([0.02, math.nan, 0.02], 0.025) == [False, False, False]  # k = 2: 0.02 > 0.0125


def config(name: str) -> dict:
    return yaml.safe_load((ROOT / "experiments" / "config" / f"{name}.yaml").read_text())


def test_design_is_read_from_the_matrix():
    """Seeds as the matrix runs them: `seeds`, `more_seeds` and the `monotonic` block's (10 behind every
    verdict of the default, 3 for the ablations whose parts are inert there)."""
    runs = calibrate.matrix_runs(config("default"))
    assert calibrate.design_of(runs, "ppo", "trpo", 5) == {e: (10, 10) for e in
                                                            ("CartPole-v1", "InvertedPendulum-v5", "Pendulum-v1")}
    assert calibrate.design_of(runs, "acer", "sb3-a2c", 5) == {e: (10, 10) for e in ("CartPole-v1", "Pendulum-v1")}
    assert calibrate.design_of(runs, "acer", "acer-no-tr", 5) == {"CartPole-v1": (10, 10)}
    assert calibrate.design_of(runs, "acer-no-trunc", "acer-no-retrace", 3) == {"CartPole-v1": (3, 3)}
    assert calibrate.design_of(runs, "acer-no-trunc", "acer-no-retrace", 5) == {}
    assert calibrate.design_of(calibrate.matrix_runs(config("smoke")), "ppo", "trpo", 3) == {}


@pytest.mark.parametrize("name", ["default", "smoke"])
def test_false_verdict_rate_of_every_shipped_design(name):
    """A/A at the threshold: the share of designs with a verdict is ≤ nominal + 2 MC SE, or the
    design is flagged and its verdict forced to inconclusive (checked through claims)."""
    cfg = claims.load_config(config(name).get("claims"))
    t = calibrate.calibrate(config(name), cfg, SNAPSHOT, n_sim=1000, with_mde=False)
    tested = t[t["n_sim"] > 0]
    parts = {(p.claim, p.part) for p in calibrate.comparison_parts(cfg)}
    assert parts <= set(zip(t["claim"], t["part"]))
    for r in tested.itertuples():
        ok = r.false_verdict_rate <= r.nominal + 2 * r.false_verdict_se
        assert ok == r.calibrated
        if not ok:  # the verdict must say so
            c = claims.Claim(r.claim, [claims.Part(r.part, claims.SUPPORTED, "", "")])
            claims.attach_calibration(c, t)
            assert c.verdict == claims.INCONCLUSIVE and "uncalibrated design" in c.parts[0].reason
    if name == "default":
        assert len(tested) >= 6 and tested["calibrated"].all()


def test_percentile_bootstrap_is_not_calibrated_at_the_default_design():
    """Why the permutation test: the former rule gives too many false verdicts at 3 v 3 runs (the
    3-seed snapshot's C6 design)."""
    sim = calibrate.Simulator({"CartPole-v1": (3, 3)}, calibrate.score_pools(SNAPSHOT, "auc_norm"), "diff", 400, 1, 0)
    sup, ref = sim.percentile_bootstrap(1000, 0.95, 0)
    nominal, se = 0.05, math.sqrt(0.05 * 0.95 / 400)
    assert sup + ref > nominal + 3 * se


def test_mde_is_the_80_percent_power_point():
    design = {"CartPole-v1": (3, 3), "Pendulum-v1": (3, 3), "InvertedPendulum-v5": (3, 3)}
    sim = calibrate.Simulator(design, calibrate.score_pools(SNAPSHOT, "auc_norm"), "diff", 300, 1000, 0)
    d = calibrate.mde(sim, 0.025, 0.8, 1.0)
    assert math.isfinite(d) and d > 0
    power = lambda delta: float((sim.pvalues(delta)[0] <= 0.025).mean())  # noqa: E731
    assert power(d) >= 0.8 > power(0.9 * d)
    assert power(0.0) <= 0.05


def test_calibration_is_deterministic_on_any_workers_and_flags_underpowered_designs():
    cfg = claims.load_config({"calibration": {"n_sim": 100}, "permutation": {"n_perm": 500}})
    three = {**config("default"), "more_seeds": []}     # the default at 3 seeds (C3's runs keep their 10)
    a = calibrate.calibrate(three, {**cfg, "min_runs": 3}, SNAPSHOT)
    b = calibrate.calibrate(three, {**cfg, "min_runs": 3}, SNAPSHOT, workers=2)    # the rule's two processes
    pd.testing.assert_frame_equal(a, b)
    c6 = a[(a["claim"] == "C6") & (a["part"] == "trust region essential")].iloc[0]
    assert c6["mde"] == math.inf  # 3 v 3 runs in one env
    c = claims.Claim("C6", [claims.Part("trust region essential", claims.SUPPORTED, "", "")])
    claims.attach_calibration(c, a)
    assert c.verdict == claims.INCONCLUSIVE and "underpowered design" in c.parts[0].reason
    assert c.parts[0].mde == math.inf and c.parts[0].false_verdict_rate == c6["false_verdict_rate"]


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "experiments/config").glob("*.yaml")
                                        if "algorithms" in (yaml.safe_load(p.read_text()) or {})))
def test_every_shipped_matrix_is_calibrated_on_scores_of_its_own_envs(name):
    """The A/A rates and MDEs resample per-env scores; an env missing from the scores file falls back to
    every env's pooled, which sets the power from other tasks' spreads. So each shipped matrix either
    calibrates on its own run_metrics.csv, or every env that enters one of its comparisons is in the
    scores it uses (smoke: one seed, so none enters)."""
    cfg_m = config(name)
    cfg = claims.load_config(cfg_m.get("claims"))
    scores = cfg["calibration"]["scores"]
    own = f"{cfg_m.get('results', 'results')}/tables/run_metrics.csv"
    if scores == own:
        return
    covered = set(pd.read_csv(ROOT / scores)["env"])
    runs = calibrate.matrix_runs(cfg_m)
    envs = {e for p in calibrate.comparison_parts(cfg) for e in calibrate.design_of(runs, p.x, p.y, cfg["min_runs"])}
    assert envs <= covered, f"{name}: no scores for {sorted(envs - covered)} in {scores}"
