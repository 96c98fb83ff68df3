"""Claim C6 judges an ablation only where the mechanism it removes acts in the full ACER runs."""
import numpy as np
import pandas as pd

from analysis import claims, mechanisms

CFG = {**claims.load_config(), "min_runs": 3}


def _updates(env, frac_truncated, tr_active, replay_share, n=200, seeds=(0, 1, 2)):
    rows = []
    for s in seeds:
        for i in range(n):
            rows.append({"algo": "acer", "env": env, "seed": s, "step": i, "frac_truncated": frac_truncated,
                         "tr_effect": tr_active,
                         "mean_rho_replay": 1.0 if i < replay_share * n else np.nan})
    return pd.DataFrame(rows)


def _metrics(envs, effect):
    """auc_norm per run: acer 0.8 ± noise, each ablation `effect[ablation]` lower."""
    rng = np.random.default_rng(0)
    rows = []
    for env in envs:
        for algo in ("acer", "acer-no-tr", "acer-no-trunc", "acer-no-retrace", "acer-no-replay"):
            for s in range(6):
                rows.append({"algo": algo, "env": env, "seed": s, "setting": "", "used": True, "status": "ok",
                             "auc_norm": 0.8 - effect.get(algo, 0.0) + 0.01 * rng.standard_normal()})
    return pd.DataFrame(rows)


def test_activity_is_the_mean_fraction_or_the_logged_share():
    u = pd.concat([_updates("A", 0.2, 0.0, 0.5), _updates("B", 0.001, 0.3, 0.0)])
    a = mechanisms.activity(u, min_active=0.01).set_index(["env", "ablation"])
    assert a.loc[("A", "acer-no-trunc"), "activity"] == 0.2 and a.loc[("A", "acer-no-trunc"), "active"]
    assert not a.loc[("A", "acer-no-tr"), "active"]
    assert a.loc[("A", "acer-no-replay"), "activity"] == 0.5
    assert not a.loc[("B", "acer-no-trunc"), "active"] and not a.loc[("B", "acer-no-replay"), "active"]
    assert mechanisms.inert_envs(a.reset_index(), ["acer-no-trunc"]) == {"B": "ρ truncated 0.001 (frac_truncated) in B"}


def test_c6_parts_are_inert_where_the_mechanism_never_acts_and_judged_where_it_does():
    effect = {"acer-no-tr": 0.5, "acer-no-retrace": 0.3, "acer-no-replay": 0.3}
    m = _metrics(["A", "B"], effect)
    # the trust region binds in A only; truncation never fires anywhere
    u = pd.concat([_updates("A", 0.0, 0.3, 1.0), _updates("B", 0.0, 0.0, 1.0)])
    c6 = claims.judge_claim("C6", m, CFG, updates=u)
    parts = {p.name: p for p in c6.parts}
    tr = parts["trust region essential"]
    assert tr.verdict != claims.INERT and "(1 envs: A)" in tr.test and "inert" in tr.reason
    for name, p in parts.items():
        if name.startswith("acer-no-trunc better"):
            assert p.verdict == claims.INERT and np.isnan(p.effect)
    assert c6.verdict == claims.INCONCLUSIVE          # an inert part cannot support the claim
    # with every mechanism active the same data decide: the trust region costs 0.5 > 0.1
    u = pd.concat([_updates(e, 0.2, 0.3, 1.0) for e in ("A", "B")])
    parts = {p.name: p for p in claims.judge_claim("C6", m, CFG, updates=u).parts}
    assert parts["trust region essential"].verdict == claims.SUPPORTED
    assert all(p.verdict != claims.INERT for p in parts.values())
    # without diagnostics (not logged) nothing is called inert
    assert all(p.verdict != claims.INERT for p in claims.judge_claim("C6", m, CFG).parts)
