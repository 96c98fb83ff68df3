"""Equal-budget tuning (experiments/tune.py, experiments/config/tuning.yaml; issue 12, claim C5).

Oracles: the algorithms' Config dataclass defaults (learning rate, network, γ), the experiment
configs' seed lists read directly, and the normalised AUC recomputed from each run's eval.csv
with numpy (trapezoid over [0, budget], random score at step 0, last value held)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from algorithms import registry
from algorithms.base import ConfigError
from experiments import tune
from experiments.envs import ROOT, load_catalog

CONFIG_DIR = ROOT / "experiments" / "config"
SHARED = ("net_arch", "activation", "gamma")


def _tuning() -> dict:
    return yaml.safe_load(tune.TUNING_YAML.read_text())


def _default_lr(algo: str) -> float:
    return registry.get(algo)[0].Config.__dataclass_fields__["learning_rate"].default


def test_grid_identical_for_every_algorithm_of_a_comparison() -> None:
    """Same number of configurations (≤ max_configs), and configuration j sets the same shared
    knobs on every algorithm: equal net/activation/γ, and lr_a / default_lr_a equal across a."""
    t, catalog = _tuning(), load_catalog()
    points = tune.expand_grid(t["grid"])
    assert 1 < len(points) <= t["max_configs"]
    assert len(points) == int(np.prod([len(v) for v in t["grid"].values()]))
    for comp in t["comparisons"].values():
        assert len(comp["algorithms"]) >= 2
        for env in comp["envs"]:
            for p in points:
                cfgs = {a: tune.resolve_tuned(a, env, p, t, catalog) for a in comp["algorithms"]}
                ref = next(iter(cfgs.values()))
                ratios = {round(c["learning_rate"] / _default_lr(a), 9) for a, c in cfgs.items()}
                assert ratios == {float(dict(p.knobs)["learning_rate_x"])}, (env, p.label, ratios)
                for a, c in cfgs.items():
                    assert {k: c[k] for k in SHARED} == {k: ref[k] for k in SHARED}, (env, p.label, a)


def test_first_choice_of_every_knob_is_each_library_default() -> None:
    """The tie-break target (configuration c0) is every algorithm's own default setting."""
    t = _tuning()
    p0 = tune.expand_grid(t["grid"])[0]
    assert p0.is_default and p0.id == "c0"
    for comp in t["comparisons"].values():
        for a in comp["algorithms"]:
            fields = registry.get(a)[0].Config.__dataclass_fields__
            got = tune.point_settings(a, p0)
            for k, v in got.items():
                want = fields[k].default
                assert (list(want) if isinstance(want, tuple) else want) == v, (a, k)


def test_tuning_ignores_hand_tuned_env_entries_but_keeps_family_settings() -> None:
    """The tuning base reads hyperparams.yaml's `family:` entries, never its env-id entries."""
    t, catalog = _tuning(), load_catalog()
    table = yaml.safe_load(tune.HYPERPARAMS_YAML.read_text())
    p0 = tune.expand_grid(t["grid"])[0]
    for comp in t["comparisons"].values():
        for a in comp["algorithms"]:
            for env in comp["envs"]:
                spec = catalog.get(env)
                cfg = tune.resolve_tuned(a, env, p0, t, catalog)
                fam = (table.get(a) or {}).get(f"family:{spec.family}") or {}
                fixed = ((t.get("fixed") or {}).get(a) or {}).get(env) or {}
                fields = registry.get(a)[0].Config.__dataclass_fields__
                for k, v in cfg.items():
                    if k in tune.point_settings(a, p0):
                        continue
                    want = fixed.get(k, fam.get(k, spec.hyperparams.get(k, fields[k].default)))
                    assert (list(want) if isinstance(want, tuple) else want) == v, (a, env, k)


def test_tuning_seeds_disjoint_from_every_evaluation_seed() -> None:
    t = _tuning()
    tuning_seeds = set(t["seeds"])
    for name in ("default.yaml", "paper.yaml", "smoke.yaml"):
        c = yaml.safe_load((CONFIG_DIR / name).read_text())
        used = set(c["seeds"]) | set((c.get("sweeps") or {}).get("seeds", []))
        assert used and not used & tuning_seeds, name
    # and the evaluation episodes' reset seeds (EVAL_SEED_OFFSET + seed + j) never coincide
    from experiments.runner import EVAL_SEED_OFFSET
    n_ep = max(s.eval_episodes for s in load_catalog().envs.values())
    paper = yaml.safe_load((CONFIG_DIR / "paper.yaml").read_text())["seeds"]
    ev = {EVAL_SEED_OFFSET + s + j for s in paper for j in range(n_ep)}
    assert not ev & {EVAL_SEED_OFFSET + s + j for s in tuning_seeds for j in range(n_ep)}


def test_load_tuning_rejects_overlapping_seeds_and_oversized_grids(tmp_path: Path) -> None:
    t = _tuning()
    bad = tmp_path / "t.yaml"
    bad.write_text(yaml.safe_dump({**t, "seeds": [101, 2]}))
    with pytest.raises(ConfigError, match="overlap"):
        tune.load_tuning(bad)
    bad.write_text(yaml.safe_dump({**t, "grid": {**t["grid"], "learning_rate_x": [1, 3, 9]}, "max_configs": 8}))
    with pytest.raises(ConfigError, match="max_configs"):
        tune.load_tuning(bad)


def _scores(means: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for i, (cfg, vals) in enumerate(means.items()):
        for s, v in zip((100, 101), vals, strict=False):
            rows.append({"comparison": "C", "algo": "a", "env": "E", "config": cfg, "default": i == 0,
                         "knobs": cfg, "seed": s, "used": np.isfinite(v), "auc_norm": v})
    return pd.DataFrame(rows)


def test_select_argmax_ties_and_incomplete() -> None:
    (s,) = tune.select(_scores({"c0": [0.1, 0.2], "c1": [0.5, 0.3], "c2": [0.2, 0.5]}), n_seeds=2)
    assert s["selected"] == "c1" and s["mean"] == pytest.approx(0.4)
    (s,) = tune.select(_scores({"c0": [0.4, 0.4], "c1": [0.5, 0.3], "c2": [0.1, 0.1]}), n_seeds=2)
    assert s["selected"] == "c0" and "default" in s["reason"]   # tie → the library default
    (s,) = tune.select(_scores({"c0": [0.1, 0.1], "c1": [0.5, 0.3], "c2": [0.3, 0.5]}), n_seeds=2)
    assert s["selected"] == "c1"                                 # tie without it → grid order
    (s,) = tune.select(_scores({"c0": [0.1, 0.1], "c1": [0.9, np.nan]}), n_seeds=2)
    assert s["selected"] is None and "incomplete" in s["reason"]


def _auc_norm(eval_csv: Path, budget: int, rnd: float, thr: float) -> float:
    ev = pd.read_csv(eval_csv).sort_values("step")
    x = np.r_[0.0, ev["step"].to_numpy(float), float(budget)]
    y = (ev["return_mean"].to_numpy(float) - rnd) / (thr - rnd)
    y = np.r_[0.0, y, y[-1]]
    assert x[-2] <= budget   # no point past the budget in these runs: no interpolation needed
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / budget)


def test_end_to_end_tiny_tuning_writes_the_selection(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """2 configurations × 1 seed × 2000 steps for ACER and A2C on CartPole: every run is scored,
    the selection is the argmax of the independently recomputed AUC, and a rerun trains nothing."""
    t = {"comparisons": {"T": {"algorithms": ["acer", "sb3-a2c"], "envs": ["CartPole-v1"]}},
         "matrix": "experiments/config/default.yaml", "seeds": [100], "criterion": "auc_norm", "max_configs": 8,
         "steps": {"CartPole-v1": 2000}, "grid": {"learning_rate_x": [1, 3]}}
    path = tmp_path / "tuning.yaml"
    path.write_text(yaml.safe_dump(t))
    runs, snap = tmp_path / "runs", tmp_path / "snap"
    assert tune.main(["--tuning", str(path), "--results", str(runs), "--snapshot", str(snap), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    csv = pd.read_csv(snap / "runs.csv")
    assert len(csv) == 4 and set(csv["status"]) == {"ok"} and set(csv["steps"]) == {2000}
    spec = load_catalog().get("CartPole-v1")
    sel = json.loads((snap / "selection.json").read_text())
    assert {"git_commit", "date", "versions", "tuning_yaml_sha256"} <= set(sel["provenance"])
    assert (snap / "selection.md").read_text().startswith("# Equal-budget tuning")
    for algo in ("acer", "sb3-a2c"):
        mine = csv[csv["algo"] == algo]
        oracle = {r.config: _auc_norm(Path(r.run_dir) / "eval.csv", 2000, spec.random_score, spec.threshold)
                  for r in mine.itertuples()}
        assert mine.set_index("config")["auc_norm"].to_dict() == pytest.approx(oracle)
        (entry,) = [s for s in sel["selection"] if s["algo"] == algo]
        assert entry["selected"] == max(oracle, key=oracle.get)
        lr = sel["hyperparams"][algo]["CartPole-v1"]["learning_rate"]
        assert lr == pytest.approx(_default_lr(algo) * (1 if entry["selected"] == "c0" else 3))
        assert f"{algo}:" in out
    stamp = {p: p.stat().st_mtime_ns for p in runs.rglob("summary.json")}
    assert len(stamp) == 4
    assert tune.main(["--tuning", str(path), "--results", str(runs), "--snapshot", str(snap)]) == 0
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("summary.json")} == stamp


def test_code_fingerprint_follows_the_algorithms_code(tmp_path: Path) -> None:
    """Changed algorithm code → another fingerprint → fresh tuning runs (never mixed with old ones)."""
    (tmp_path / "algorithms" / "core").mkdir(parents=True)
    f = tmp_path / "algorithms" / "core" / "x.py"
    f.write_text("a = 1\n")
    before = tune.code_fingerprint(tmp_path)
    assert tune.code_fingerprint(tmp_path) == before
    f.write_text("a = 2\n")
    assert tune.code_fingerprint(tmp_path) != before
    t = _tuning()
    runs = tune.plan(t, code="abc12345")
    assert all(Path(r.out_dir).relative_to(tune.RESULTS).parts[0] == "abc12345" for r in runs)
    assert len(runs) == len(t["seeds"]) * len(tune.expand_grid(t["grid"])) * sum(
        len(c["algorithms"]) * len(c["envs"]) for c in t["comparisons"].values())


def test_hyperparams_yaml_holds_the_committed_selection() -> None:
    """Every completed selection of results/snapshot/tuning/selection.json is what hyperparams.yaml
    gives the evaluation runs: its env entry has exactly the selected keys and values, and the
    resolved config carries them (nothing hand-tuned left beside them)."""
    from experiments.runner import resolve_hyperparams
    sel = json.loads((tune.SNAPSHOT / "selection.json").read_text())
    table = yaml.safe_load(tune.HYPERPARAMS_YAML.read_text())
    catalog, checked = load_catalog(), 0
    for algo, envs in sel["hyperparams"].items():
        for env, entry in envs.items():
            assert table[algo][env] == entry, (algo, env)
            _, cfg = resolve_hyperparams(algo, catalog.get(env), {})
            for k, v in entry.items():
                got = getattr(cfg, k)
                assert (list(got) if isinstance(got, tuple) else got) == v, (algo, env, k)
            checked += 1
    assert checked >= 2


def test_evaluation_runs_use_exactly_the_configuration_that_was_tuned() -> None:
    """The full resolved config of every tuned (algo, env) today equals what its tuning runs ran
    with (selection.json `ran_with`, from their summary.json). Fails when a default or a
    `family:` setting changed after tuning: re-run `python -m experiments.tune`."""
    from algorithms.base import config_dict
    from experiments.hyperparams import changed_keys
    from experiments.runner import resolve_hyperparams
    sel = json.loads((tune.SNAPSHOT / "selection.json").read_text())
    catalog = load_catalog()
    stale = {}
    for s in sel["selection"]:
        if s["selected"] is None:
            continue
        _, cfg = resolve_hyperparams(s["algo"], catalog.get(s["env"]), {})
        now = config_dict(cfg)
        # a hyper-parameter added after tuning (absent from ran_with) must sit at its default, which
        # reproduces the behaviour before it existed (e.g. `cnn`, which only image observations read)
        diff = {k: (s["ran_with"].get(k), now.get(k)) for k in changed_keys(s["ran_with"], cfg)}
        if diff:
            stale[(s["algo"], s["env"])] = diff
    assert not stale, f"tuned with ≠ resolved now (tuned, now): {stale}"
