"""Calibration of the parts judged by a one-sample percentile bootstrap against thresholds (claim C4's
robustness R, claim C7's convergence rate r): their A/A analogue by the double bootstrap.

A comparison part has an A/A design (two identical methods: analysis/calibrate.py). A one-sample
part — "θ's 95 % interval lies above ``support_above``" — has none, but the same question can be
asked of it: *when the true θ sits exactly on a threshold, how often does the rule still give a
verdict?* The double bootstrap answers it from the runs themselves (Efron & Tibshirani 1993, §18;
Hall 1992, §3.11):

* outer level: ``n_sim`` new designs drawn from the observed runs, each stratum resampled with
  replacement to its own size (what a rerun with new seeds would give, as far as the runs tell);
* inner level: on each, the part's own interval [lo_s, hi_s] (its resamples, confidence and seed);
* the data shifted onto a threshold t moves every estimate by t − θ̂ (location shift; exact for
  C7's log-log slope, where scaling the errors by N^(θ̂ − t) moves every resampled slope by the same
  amount; an approximation for C4's ratio R, bounded near 1), so with d_lo = lo_s − θ̂ and
  d_hi = hi_s − θ̂:

      false "supported"      at θ = support_above:  P(d_lo > 0)
      false "not supported"  at θ = refute_below:   P(d_hi < 0)
      false-verdict rate     their sum (nominal α = 1 − confidence: α/2 each side, as the A/A rate;
                             each tail is reported too)
      MDE                    the smallest θ with P(supported) ≥ power: support_above − q_{1−power}(d_lo)

Checked against a direct Monte-Carlo oracle (tests/test_double_bootstrap.py: the percentile interval of
a normal mean): close at 30 runs, and *over*-stating the false rate at 5 (0.12 against 0.073): with few
runs a design may be flagged that is less anti-conservative than it looks, never the reverse there.
Seeded (``calibration.seed``): deterministic.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from analysis.stats import Estimate

METHOD = "double bootstrap (location shift onto each threshold)"


def interval_offsets(strata: Sequence[np.ndarray], estimate: Callable[[list[np.ndarray]], Estimate],
                     n_sim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(lo_s − θ̂, hi_s − θ̂) over ``n_sim`` designs resampled from ``strata`` (each to its own size; an
    empty stratum stays empty), θ̂ = estimate(strata)."""
    rng = np.random.default_rng(seed)
    point = estimate(list(strata)).point
    d = np.empty((n_sim, 2))
    for s in range(n_sim):
        e = estimate([a[rng.integers(0, len(a), len(a))] if len(a) else a for a in strata])
        d[s] = e.lo - point, e.hi - point
    return d[:, 0], d[:, 1]


def boundary_rates(d_lo: np.ndarray, d_hi: np.ndarray, support_above: float, refute_below: float,
                   nominal: float, power: float) -> dict[str, Any]:
    """The calibration row's numbers (analysis/calibrate.py COLUMNS) from the interval offsets."""
    n = len(d_lo)
    f_sup, f_ref = float((d_lo > 0).mean()), float((d_hi < 0).mean())
    f = f_sup + f_ref   # the two events exclude each other in a draw (lo ≤ hi): f is one proportion
    se = math.sqrt(f * (1 - f) / n)
    return {"n_sim": n, "false_verdict_rate": f, "false_verdict_se": se, "false_supported_rate": f_sup,
            "false_not_supported_rate": f_ref, "nominal": nominal, "calibrated": f <= nominal + 2 * se,
            "mde": float(support_above - np.quantile(d_lo, 1 - power)), "method": METHOD}  # fmt: skip
