"""The ours-vs-published ledger: each statistic against a direct computation of its source's rule, the
tests against scipy, the verdict and budget logic on synthetic runs, and the data file's integrity."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import ledger
from experiments.envs import load_catalog

UPDATES = pd.DataFrame(columns=["algo", "env", "seed", "step", "episode_return", "episodes"])


def _curves(algo, env, finals, steps=(0, 500, 1000, 1024, 1536)):
    """Eval curves whose last value within budget 1000 + one 512-step update is `final` (at step 1024),
    with a spike the update after (1536, outside)."""
    rows = []
    for seed, f in enumerate(finals):
        for s in steps:
            v = f if s == 1024 else (f - 10 if s < 1024 else 1e6)
            rows.append({"algo": algo, "env": env, "seed": seed, "status": "ok", "step": s, "eval_return": v})
    return pd.DataFrame(rows)


def _updates(algo, env, n_seeds, steps=(0, 512, 1024, 1536)):
    return pd.DataFrame([{"algo": algo, "env": env, "seed": s, "step": t, "episode_return": np.nan, "episodes": 0}
                         for s in range(n_seeds) for t in steps])


def test_final_train_is_the_mean_of_the_last_window_episodes():
    rng = np.random.default_rng(0)
    n = rng.integers(0, 9, size=60)
    r = rng.normal(100, 30, size=60)
    u = pd.DataFrame({"step": np.arange(60) * 10, "episode_return": np.where(n > 0, r, np.nan), "episodes": n})
    episodes = np.repeat(r, n)                     # every training episode, oldest first
    assert ledger.final_train(u) == pytest.approx(episodes[-100:].mean())
    assert ledger.final_train(u, 40) == pytest.approx(episodes[-40:].mean())     # trpo_mpi's EpRewMean
    short = u.iloc[:5]
    assert ledger.final_train(short) == pytest.approx(np.repeat(r[:5], n[:5]).mean())


def test_max_eval_is_the_maximum_of_the_seed_mean_curve_on_the_sources_grid():
    """Tianshou's rule: average the seeds at each evaluation step, take the best step; our evaluations
    first thinned to theirs (the first at or after each multiple of eval_every)."""
    rng = np.random.default_rng(3)
    steps = np.arange(0, 100_001, 10_000)
    y = rng.normal(0, 100, size=(5, len(steps))) + steps / 100
    e = pd.DataFrame([{"seed": s, "step": t, "eval_return": y[s, j]} for s in range(5) for j, t in enumerate(steps)])
    x = ledger.max_of_mean_curve(e, None)
    best = np.argmax(y.mean(0))
    assert np.array_equal(x, y[:, best]) and x.mean() <= y.max(1).mean()     # never above the per-seed maxima
    keep = [j for j, t in enumerate(steps) if t % 30_000 == 0]              # 0, 30k, 60k, 90k
    x30 = ledger.max_of_mean_curve(e, 30_000)
    assert np.array_equal(x30, y[:, keep][:, np.argmax(y[:, keep].mean(0))])


def test_welch_and_prediction_interval_against_scipy():
    x = np.array([1.0, 4.0, 2.5, 7.0, 3.0])
    lo, hi, p = ledger.welch(x, 2.0, 1.5, 10)
    ref = sps.ttest_ind_from_stats(x.mean(), x.std(ddof=1), 5, 2.0, 1.5, 10, equal_var=False)
    assert p == pytest.approx(ref.pvalue)
    v1, v2 = x.var(ddof=1) / 5, 1.5 ** 2 / 10
    df = (v1 + v2) ** 2 / (v1 ** 2 / 4 + v2 ** 2 / 9)
    half = sps.t.ppf(0.975, df) * np.sqrt(v1 + v2)
    assert (lo, hi) == pytest.approx((x.mean() - 2.0 - half, x.mean() - 2.0 + half))
    plo, phi = ledger.prediction_interval(x)
    half = sps.t.ppf(0.975, 4) * x.std(ddof=1) * np.sqrt(1 + 1 / 5)
    assert (plo, phi) == pytest.approx((x.mean() - half, x.mean() + half))
    m, tlo, thi = ledger.t_interval(x)
    assert (tlo, thi) == pytest.approx(sps.t.interval(0.95, 4, loc=x.mean(), scale=sps.sem(x)))


def _pub(statistic, value, seeds, spread=np.nan, **kw):
    return {"source": "x", "algo": "ppo", "env": "Hopper-v5", "env_version": "v3", "budget": 1000, "seeds": seeds,
            "statistic": statistic, "value": value, "spread": spread, "spread_kind": "", "eval_every": np.nan,
            "window": 100, "notes": ""} | kw


@pytest.mark.parametrize("published,verdict", [(500.0, "not distinguishable"), (400.0, "above"), (700.0, "below")])
def test_verdicts_and_the_budget(published, verdict):
    """One published run: its value against our prediction interval; a published mean ± std over seeds:
    Welch; no spread: no test. The final evaluation is the one of the update that crosses the budget."""
    finals = [480.0, 500.0, 520.0, 510.0, 490.0]
    curves = _curves("ppo", "Hopper-v5", finals)
    runs = pd.DataFrame({"algo": "ppo", "env": "Hopper-v5", "seed": range(5), "status": "ok", "total_steps": 1000})
    upd = _updates("ppo", "Hopper-v5", 5)
    pub = pd.DataFrame([_pub("final_eval", published, 1), _pub("final_eval", published, 10, spread=5.0),
                        _pub("final_eval", published, 6)])
    t = ledger.ledger_table(pub, curves, upd, runs)
    assert list(t["algo"]) == ["ppo"] * 3              # sb3-ppo has no runs: no row
    assert np.allclose(t["ours"], np.mean(finals)) and (t["n_runs"] == 5).all()
    one, welch, none = t.itertuples(index=False)
    assert one.verdict == verdict and "v5 here, v3 there" in one.note
    assert welch.verdict == verdict and welch.diff_lo < np.mean(finals) - published < welch.diff_hi
    assert none.verdict == "no test" and "no spread published" in none.note
    runs["total_steps"] = 900                         # our budget below theirs: not compared
    t = ledger.ledger_table(pub, curves, upd, runs)
    assert set(t["verdict"]) == {"—"} and t["note"].str.contains("not compared").all()


def test_identical_runs_of_two_algorithms_are_named_one_result():
    finals = [480.0, 500.0, 520.0]
    curves = pd.concat([_curves(a, "Hopper-v5", finals) for a in ("trpo", "npg")])
    runs = pd.DataFrame([{"algo": a, "env": "Hopper-v5", "seed": s, "status": "ok", "total_steps": 1000}
                         for a in ("trpo", "npg") for s in range(3)])
    upd = pd.concat([_updates(a, "Hopper-v5", 3) for a in ("trpo", "npg")])
    pub = pd.DataFrame([_pub("max_eval", 450.0, 10, spread=50.0, algo="trpo"),
                        _pub("max_eval", 400.0, 10, spread=50.0, algo="npg")])
    t = ledger.ledger_table(pub, curves, upd, runs)
    assert "same per-run numbers as trpo" in t.loc[t["algo"] == "npg", "note"].iloc[0]
    assert "same per-run" not in t.loc[t["algo"] == "trpo", "note"].iloc[0]


def test_published_data_file_is_well_formed():
    d = ledger.load_published()
    catalog = load_catalog()
    for env in set(d["env"]):
        catalog.get(env)                              # every env is one of envs.yaml
    assert d["value"].notna().all() and (d["budget"] > 0).all() and (d["seeds"] >= 1).all()
    assert not d.duplicated(["source", "algo", "env", "statistic", "budget"]).any()
    assert {"tianshou", "rl-zoo", "cleanrl", "baselines"} <= set(d["source"])
    assert (d.loc[d["source"] == "tianshou", "eval_every"] == 30000).all()      # its step_per_epoch
    assert (d.loc[d["notes"].str.startswith("trpo_mpi", na=False), "window"] == 40).all()
    assert d["spread_kind"].where(d["spread"].notna(), "x").astype(bool).all()  # every ± says what it is over


def test_interim_finals_are_the_per_seed_final_and_max_over_finished_runs():
    """analysis.interim: per (env, algo), the mean and t-interval of each finished run's last and best
    evaluation, against a direct computation; a run without summary.json is not 'finished'."""
    from analysis import interim

    rng = np.random.default_rng(1)
    curves, runs = [], []
    for seed in range(3):
        ev = rng.normal(100 * (seed + 1), 10, 5)
        curves += [{"env": "E-v5", "algo": "ppo", "seed": seed, "status": "ok", "step": 1000 * (i + 1),
                    "eval_return": v} for i, v in enumerate(ev)]
        runs.append({"env": "E-v5", "algo": "ppo", "seed": seed, "status": "ok", "wall_s": 1800.0})
    c, r = pd.DataFrame(curves), pd.DataFrame(runs)
    t = interim.finals_table(c, r).iloc[0]
    last = c.sort_values("step").groupby("seed")["eval_return"].last().to_numpy()
    best = c.groupby("seed")["eval_return"].max().to_numpy()
    assert t.n_runs == 3 and t.core_hours == pytest.approx(1.5)
    assert t.final_mean == pytest.approx(last.mean()) and t.max_mean == pytest.approx(best.mean())
    half = sps.t.ppf(0.975, 2) * last.std(ddof=1) / np.sqrt(3)
    assert (t.final_lo, t.final_hi) == pytest.approx((last.mean() - half, last.mean() + half))


def test_interim_counts_only_runs_with_a_summary(tmp_path):
    from analysis import interim
    from analysis.aggregate import RunRef

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "summary.json").write_text("{}")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "checkpoint.pt").write_text("")
    refs = [RunRef(str(tmp_path / d), "ppo", "E-v5", i) for i, d in enumerate("ab")]
    assert [r.run_dir for r in interim.finished(refs)] == [str(tmp_path / "a")]


def test_pairs_are_paired_t_comparisons_of_ours_against_its_reference_on_common_seeds():
    """analysis.pairs.pairs_table: per env, on the seeds both sides finished (≥ 2), the mean per-seed
    difference x − y of the final and max returns with the paired-t interval and p, against scipy."""
    from analysis import pairs

    g = np.random.default_rng(5)
    fx, fy = g.normal(1800, 900, 7), g.normal(3300, 150, 4)
    seeds = {("Hopper-v5", "trpo"): {s: (f, f + 300) for s, f in enumerate(fx)},          # seeds 0–6
             ("Hopper-v5", "sb3-trpo"): {s + 1: (f, f + 100) for s, f in enumerate(fy)},  # seeds 1–4
             ("Walker2d-v5", "trpo"): {0: (4000.0, 4100.0), 5: (1.0, 2.0)},             # one common seed: no row
             ("Walker2d-v5", "sb3-trpo"): {0: (3000.0, 3100.0), 1: (3500.0, 3600.0)}}
    t = pairs.pairs_table(seeds, [("trpo", "sb3-trpo"), ("ppo", "sb3-ppo")])
    assert len(t) == 1
    r = t.iloc[0]
    assert (r.env, r.x, r.y, r.n, r.seeds, r.x_only, r.y_only) == ("Hopper-v5", "trpo", "sb3-trpo", 4, "1 2 3 4", 3, 0)
    ref = sps.ttest_rel(fx[1:5], fy)
    ci = ref.confidence_interval(0.95)
    assert r.final_diff == pytest.approx(fx[1:5].mean() - fy.mean())
    assert r.final_p == pytest.approx(ref.pvalue, rel=1e-9)
    assert (r.final_lo, r.final_hi) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert r.max_diff == pytest.approx(r.final_diff + 200)
    assert "| Hopper-v5 | trpo | sb3-trpo | 1 2 3 4 |" in pairs.pairs_markdown(t)
    same = pairs.pairs_table({("E", "a"): {0: (1.0, 1.0), 1: (2.0, 2.0)}, ("E", "b"): {0: (1.0, 1.0), 1: (2.0, 2.0)}},
                             [("a", "b")]).iloc[0]
    assert (same.final_diff, same.final_lo, same.final_hi, same.final_p) == (0.0, 0.0, 0.0, 1.0)
