"""The ours-vs-published ledger: per-run statistics against direct computations, the interval
against scipy, the verdict and budget logic on synthetic runs, and the data file's integrity."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import ledger
from experiments.envs import load_catalog


def _curves(algo, env, finals, steps=(0, 500, 1000, 1500)):
    """Eval curves whose value at the last step ≤ 1000 is `final`, with a spike after the budget."""
    rows = []
    for seed, f in enumerate(finals):
        for s in steps:
            v = f if s == 1000 else (f - 10 if s < 1000 else 1e6)
            rows.append({"algo": algo, "env": env, "seed": seed, "status": "ok", "step": s, "eval_return": v})
    return pd.DataFrame(rows)


def test_final_train_is_the_mean_of_the_last_100_episodes():
    rng = np.random.default_rng(0)
    n = rng.integers(0, 9, size=60)
    r = rng.normal(100, 30, size=60)
    u = pd.DataFrame({"step": np.arange(60) * 10, "episode_return": np.where(n > 0, r, np.nan), "episodes": n})
    episodes = np.repeat(r, n)                     # every training episode, oldest first
    assert ledger.final_train(pd.DataFrame(), u) == pytest.approx(episodes[-100:].mean())
    short = u.iloc[:5]
    assert ledger.final_train(pd.DataFrame(), short) == pytest.approx(np.repeat(r[:5], n[:5]).mean())


def test_eval_statistics():
    e = pd.DataFrame({"step": [30, 10, 20], "eval_return": [5.0, 1.0, 9.0]})
    assert ledger.max_eval(e, None) == 9.0 and ledger.final_eval(e, None) == 5.0


def test_t_interval_matches_scipy():
    x = np.array([1.0, 4.0, 2.5, 7.0, 3.0])
    m, lo, hi = ledger.t_interval(x)
    exp = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert m == pytest.approx(x.mean()) and (lo, hi) == pytest.approx(exp)


@pytest.mark.parametrize("published,verdict", [(500.0, "within"), (400.0, "above"), (700.0, "below")])
def test_verdict_within_the_published_budget(published, verdict):
    finals = [480.0, 500.0, 520.0, 510.0, 490.0]
    curves = _curves("ppo", "Hopper-v5", finals)
    runs = pd.DataFrame({"algo": "ppo", "env": "Hopper-v5", "seed": range(5), "status": "ok", "total_steps": 1500})
    pub = pd.DataFrame([{"source": "x", "algo": "ppo", "env": "Hopper-v5", "env_version": "v3", "budget": 1000,
                         "seeds": 10, "statistic": s, "value": published, "spread": np.nan, "notes": ""}
                        for s in ("final_eval", "max_eval")])
    t = ledger.ledger_table(pub, curves, pd.DataFrame(columns=["algo", "env", "seed", "step"]), runs)
    assert list(t["algo"]) == ["ppo", "ppo"]          # sb3-ppo has no runs: no row
    for _, r in t.iterrows():                         # the spike after the budget is ignored
        assert r["ours"] == pytest.approx(np.mean(finals)) and r["n_runs"] == 5
        assert r["verdict"] == verdict and "v5 here, v3 there" in r["note"]
    runs["total_steps"] = 900                         # our budget below theirs: not compared
    t = ledger.ledger_table(pub, curves, pd.DataFrame(columns=["algo", "env", "seed", "step"]), runs)
    assert set(t["verdict"]) == {"—"} and t["note"].str.contains("not compared").all()


def test_published_data_file_is_well_formed():
    d = ledger.load_published()
    catalog = load_catalog()
    for env in set(d["env"]):
        catalog.get(env)                              # every env is one of envs.yaml
    assert d["value"].notna().all() and (d["budget"] > 0).all() and (d["seeds"] >= 1).all()
    assert not d.duplicated(["source", "algo", "env", "statistic", "budget"]).any()
    assert {"tianshou", "rl-zoo", "cleanrl", "baselines"} <= set(d["source"])


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
