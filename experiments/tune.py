"""Equal-budget hyper-parameter tuning of the algorithms a claim compares (issue 12, claim C5).

    python -m experiments.tune [--jobs N] [--envs ENV ...] [--comparison C5] [--score-only] [--dry-run]

The design is pre-registered in ``experiments/config/tuning.yaml``: for every comparison and
every env of it, each algorithm gets the SAME grid over the shared knobs (learning rate as a
multiple of the algorithm's own default, network, γ), the same tuning seeds (disjoint from the
evaluation seeds) and the default matrix's budget. Every (algo, env, configuration, seed) runs
through ``experiments.runner.execute`` (resumable: a finished run directory is skipped, a killed
one resumes from its checkpoint) under ``results/tuning/``, named by a hash of its full resolved
hyper-parameters, so a change of an algorithm's defaults makes new runs instead of mixing results.

Score of configuration j of algorithm a on env e (``criterion``, auc_norm by default):

    S(a, e, j) = (1/|seeds|) Σ_{s ∈ seeds} AUC_norm(a, e, j, s)

with AUC_norm the normalised area under the eval curve of ``analysis.stats.run_metrics``.
Selected: j* = argmax_j S(a, e, j); ties within ``tie_tolerance`` go to the library default
(the first choice of every knob), then to the first in grid order. Writes
``results/snapshot/tuning/{runs.csv, selection.json, selection.md}`` and prints the YAML entries
for ``hyperparams.yaml``.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import hashlib
import itertools
import json
import multiprocessing as mp
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from algorithms import registry
from algorithms.base import ConfigError, config_dict
from experiments.envs import ROOT, EnvCatalog, load_catalog
from experiments.matrix import budget_of, env_slug

CONFIG_DIR = ROOT / "experiments" / "config"
TUNING_YAML, HYPERPARAMS_YAML = CONFIG_DIR / "tuning.yaml", CONFIG_DIR / "hyperparams.yaml"
RESULTS = ROOT / "results" / "tuning"
SNAPSHOT = ROOT / "results" / "snapshot" / "tuning"
LR_KNOB = "learning_rate_x"


# --- the design ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """One configuration of the grid: the index of the chosen value of every knob."""

    index: int
    knobs: tuple[tuple[str, Any], ...]   # (knob, chosen value), in the grid's knob order
    choice: tuple[int, ...]              # index of each chosen value in its knob's list

    @property
    def id(self) -> str:
        return f"c{self.index}"

    @property
    def is_default(self) -> bool:
        return all(i == 0 for i in self.choice)

    @property
    def label(self) -> str:
        parts = []
        for k, v in self.knobs:
            if isinstance(v, Mapping):
                v = "-".join("x".join(map(str, x)) if isinstance(x, list) else str(x) for x in v.values())
            parts.append(f"{'lr×' if k == LR_KNOB else k + '='}{v}")
        return " ".join(parts)


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[Point]:
    """The Cartesian product of the knobs' lists, the last knob varying fastest."""
    names = list(grid)
    lists = [list(grid[k]) for k in names]
    if any(not v for v in lists):
        raise ConfigError("tuning grid: every knob needs at least one value")
    return [Point(i, tuple(zip(names, (lists[j][c] for j, c in enumerate(combo)), strict=True)), combo)
            for i, combo in enumerate(itertools.product(*(range(len(v)) for v in lists)))]


def point_settings(algo: str, point: Point) -> dict[str, Any]:
    """Hyper-parameters of ``point`` for ``algo``: ``learning_rate_x`` × the algorithm's own
    default learning rate; a mapping value sets its keys; a scalar sets the knob's name."""
    cls, _ = registry.get(algo)
    out: dict[str, Any] = {}
    for k, v in point.knobs:
        if k == LR_KNOB:
            lr0 = cls.Config.__dataclass_fields__["learning_rate"].default
            out["learning_rate"] = float(f"{float(v) * lr0:.6g}")   # 3 × 7e-4 → 0.0021, not 0.0021000000000000003
        elif isinstance(v, Mapping):
            out.update(v)
        else:
            out[k] = v
    return out


def config_seeds(config_dir: Path = CONFIG_DIR) -> dict[str, set[int]]:
    """Seeds of every experiment config (matrix seeds, more_seeds, monotonic and sweep seeds), by file name."""
    out: dict[str, set[int]] = {}
    for p in sorted(config_dir.glob("*.yaml")):
        c = yaml.safe_load(p.read_text()) or {}
        if not isinstance(c, Mapping) or "profile" not in c:
            continue
        seeds = set(c.get("seeds", []))
        for extra in c.get("more_seeds", []):
            seeds |= set(extra.get("seeds", []))
        seeds |= set((c.get("monotonic") or {}).get("seeds", []))
        seeds |= set((c.get("sweeps") or {}).get("seeds", []))
        out[p.name] = {int(s) for s in seeds}
    return out


def load_tuning(path: Path = TUNING_YAML, config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """Read and check the design: grid size ≤ ``max_configs``; tuning seeds disjoint from the
    seeds of every experiment config."""
    t = yaml.safe_load(Path(path).read_text()) or {}
    n = len(expand_grid(t["grid"]))
    if n > int(t.get("max_configs", n)):
        raise ConfigError(f"tuning grid has {n} configurations > max_configs={t['max_configs']}")
    clash = {f: sorted(s & set(t["seeds"])) for f, s in config_seeds(config_dir).items() if s & set(t["seeds"])}
    if clash:
        raise ConfigError(f"tuning seeds {t['seeds']} overlap evaluation seeds: {clash}")
    return t


@dataclass(frozen=True)
class TuneRun:
    comparison: str
    algo: str
    env: str
    seed: int
    steps: int
    point: Point
    hyperparams: dict[str, Any] = field(hash=False)
    out_dir: str = ""

    @property
    def setting(self) -> str:
        return f"{self.comparison}/{self.point.id}"


def resolve_tuned(algo: str, env: str, point: Point, tuning: Mapping[str, Any], catalog: EnvCatalog,
                  hyperparams_file: Path = HYPERPARAMS_YAML) -> dict[str, Any]:
    """Full hyper-parameters of a tuning run: defaults < envs.yaml family < the algorithm's
    ``family:`` entries of hyperparams.yaml (its env-id entries are what tuning replaces) <
    tuning.yaml ``fixed`` < the grid point."""
    from experiments.runner import resolve_hyperparams
    spec = catalog.get(env)
    table = yaml.safe_load(Path(hyperparams_file).read_text()) or {}
    block = table.get(algo, table.get(registry.base_name(algo), {})) or {}
    fixed = (tuning.get("fixed") or {}).get(algo, {}) or {}
    over = {**(fixed.get(f"family:{spec.family}") or {}), **(fixed.get(env) or {}), **point_settings(algo, point)}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d) / "family_only.yaml"
        tmp.write_text(yaml.safe_dump({algo: {k: v for k, v in block.items() if str(k).startswith("family:")}}))
        _, cfg = resolve_hyperparams(algo, spec, over, tmp)
    return config_dict(cfg)


CODE_FILES = ("algorithms/**/*.py", "experiments/runner.py", "experiments/evaluation.py", "experiments/envs.py",
              "envs.yaml")


def code_fingerprint(root: Path = ROOT) -> str:
    """sha1 (8 hex) of the code a run executes (algorithms/, the runner, evaluation, envs.yaml):
    tuning runs live under results/tuning/<fingerprint>/, so changed code means fresh runs."""
    h = hashlib.sha1()
    for pattern in CODE_FILES:
        for f in sorted(root.glob(pattern)):
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:8]


def budgets(tuning: Mapping[str, Any], catalog: EnvCatalog) -> dict[str, int]:
    matrix = yaml.safe_load((ROOT / tuning["matrix"]).read_text())
    envs = {e for c in tuning["comparisons"].values() for e in c["envs"]}
    steps = {**(matrix.get("steps") or {}), **(tuning.get("steps") or {})}
    return {e: int(steps.get(e, budget_of(catalog.get(e), matrix["profile"]))) for e in sorted(envs)}


def plan(tuning: Mapping[str, Any], catalog: EnvCatalog | None = None, results: Path = RESULTS,
         hyperparams_file: Path = HYPERPARAMS_YAML, comparisons: Sequence[str] | None = None,
         code: str | None = None) -> list[TuneRun]:
    """Every (comparison, algo, env, configuration, seed) of the design, in
    ``results/<code fingerprint>/<comparison>/<algo>/<env>/<config>-<hash of its hyper-parameters>/<seed>``."""
    catalog = catalog or load_catalog()
    results = Path(results) / (code or code_fingerprint())
    points = expand_grid(tuning["grid"])
    steps = budgets(tuning, catalog)
    runs = []
    for name, comp in tuning["comparisons"].items():
        if comparisons and name not in comparisons:
            continue
        for env, algo, p in itertools.product(comp["envs"], comp["algorithms"], points):
            hp = resolve_tuned(algo, env, p, tuning, catalog, hyperparams_file)
            tag = hashlib.sha1(json.dumps(hp, sort_keys=True).encode()).hexdigest()[:8]
            for seed in tuning["seeds"]:
                out = results / name / algo / env_slug(env) / f"{p.id}-{tag}" / str(seed)
                runs.append(TuneRun(name, algo, env, int(seed), steps[env], p, hp, str(out)))
    return runs


# --- running ------------------------------------------------------------------------------
def run_one(r: TuneRun) -> tuple[str, str]:
    """Train one tuning run (nothing to do if it finished). Returns (out_dir, status)."""
    if (Path(r.out_dir) / "summary.json").exists():
        return r.out_dir, json.loads((Path(r.out_dir) / "summary.json").read_text()).get("status", "?")
    from experiments.runner import execute
    try:
        s = execute(r.algo, r.env, r.seed, r.steps, r.out_dir, r.hyperparams, progress_bar=False)
        return r.out_dir, str(s["status"])
    except Exception as e:   # recorded in summary.json as failed; the score treats it as the claims do
        return r.out_dir, f"failed ({type(e).__name__}: {e})"


def run_all(runs: Sequence[TuneRun], jobs: int = 1) -> None:
    todo = [r for r in runs if not (Path(r.out_dir) / "summary.json").exists()]
    print(f"tuning: {len(runs) - len(todo)} of {len(runs)} runs already finished; running {len(todo)} "
          f"with {jobs} process(es)", file=sys.stderr)
    pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) if jobs > 1 else None
    for i, (out, status) in enumerate(pool.map(run_one, todo) if pool else map(run_one, todo), 1):
        print(f"[{i}/{len(todo)}] {out}: {status}", file=sys.stderr, flush=True)
    if pool:
        pool.shutdown()


# --- scoring and selection ----------------------------------------------------------------
def score(runs: Sequence[TuneRun], catalog: EnvCatalog | None = None):  # -> pd.DataFrame
    """One row per tuning run with its criterion, computed by ``analysis.stats.run_metrics``."""
    import pandas as pd

    from analysis.aggregate import RunRef, collect
    from analysis.config import load_config
    from analysis.stats import run_metrics
    catalog = catalog or load_catalog()
    refs = [RunRef(r.out_dir, r.algo, r.env, r.seed, r.steps, r.setting) for r in runs]
    t = collect(refs)
    m = run_metrics(t.runs, t.curves, catalog, load_config())
    m = m.merge(t.runs[["algo", "env", "seed", "setting", "wall_s", "git_commit"]],
                on=["algo", "env", "seed", "setting"], how="left")
    rows = []
    for r in runs:
        rows.append({"comparison": r.comparison, "algo": r.algo, "env": r.env, "config": r.point.id,
                     "default": r.point.is_default, "knobs": r.point.label, "seed": r.seed, "steps": r.steps,
                     **{k: json.dumps(v) if isinstance(v, list) else v
                        for k, v in point_settings(r.algo, r.point).items()},
                     "setting": r.setting, "run_dir": str(Path(r.out_dir).relative_to(ROOT))
                     if Path(r.out_dir).is_relative_to(ROOT) else r.out_dir})
    keys = ["algo", "env", "seed", "setting"]
    cols = ["status", "used", "auc_norm", "final_return", "norm_final", "wall_s", "git_commit", "note"]
    return pd.DataFrame(rows).merge(m[keys + cols], on=keys, how="left").drop(columns="setting")


def select(scores: Any, criterion: str = "auc_norm", n_seeds: int | None = None,
           tol: float = 1e-9) -> list[dict[str, Any]]:
    """Per (comparison, algo, env): the mean criterion of every configuration and the argmax
    (ties within ``tol`` → the default configuration, then grid order). No selection while a
    configuration lacks a usable run on some seed."""
    out = []
    for (comp, algo, env), g in scores.groupby(["comparison", "algo", "env"], sort=False):
        table = []
        for cfg_id, c in g.groupby("config", sort=False):
            vals = c.loc[c["used"].fillna(False).astype(bool), criterion].astype(float)
            table.append({"config": cfg_id, "knobs": c["knobs"].iloc[0], "default": bool(c["default"].iloc[0]),
                          "mean": float(vals.mean()) if len(vals) else None, "n": int(len(vals)),
                          "per_seed": {int(s): float(v) for s, v in zip(c["seed"], c[criterion].astype(float),
                                                                        strict=True)}})
        need = n_seeds or int(g["seed"].nunique())
        missing = [t["config"] for t in table if t["n"] < need]
        entry = {"comparison": comp, "algo": algo, "env": env, "criterion": criterion, "configs": table}
        if missing:
            entry.update(selected=None, reason=f"incomplete: {len(missing)} of {len(table)} configurations lack "
                                               f"a usable run on some of the {need} tuning seeds")
        else:
            best = max(t["mean"] for t in table)
            ties = [t for t in table if t["mean"] >= best - tol]
            pick = next((t for t in ties if t["default"]), ties[0])
            why = "argmax" if len(ties) == 1 else f"tie of {len(ties)} → {'default' if pick['default'] else 'first'}"
            entry.update(selected=pick["config"], knobs=pick["knobs"], mean=pick["mean"], reason=why)
        out.append(entry)
    return out


def hyperparams_entries(selection: Sequence[Mapping[str, Any]], tuning: Mapping[str, Any]) -> dict[str, Any]:
    """algo → env → the hyperparams.yaml entry reproducing the selected configuration
    (``fixed`` settings of tuning.yaml + the grid point)."""
    points = {p.id: p for p in expand_grid(tuning["grid"])}
    out: dict[str, dict[str, Any]] = {}
    for s in selection:
        if s["selected"] is None:
            continue
        fixed = ((tuning.get("fixed") or {}).get(s["algo"], {}) or {}).get(s["env"]) or {}
        entry = {**fixed, **point_settings(s["algo"], points[s["selected"]])}
        out.setdefault(s["algo"], {})[s["env"]] = {k: (float(f"{v:.6g}") if isinstance(v, float) else v)
                                                   for k, v in entry.items()}
    return out


def yaml_snippet(entries: Mapping[str, Any]) -> str:
    lines = []
    for algo, envs in entries.items():
        lines.append(f"{algo}:   # equal-budget tuning, results/snapshot/tuning/selection.md")
        for env, e in envs.items():
            body = ", ".join(f"{k}: {json.dumps(v)}" for k, v in e.items())
            lines.append(f"  {env}: {{{body}}}")
    return "\n".join(lines) + "\n"


def provenance(tuning_path: Path) -> dict[str, Any]:
    from experiments.runner import git_commit, package_versions
    return {"git_commit": git_commit(), "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "versions": package_versions(), "command": " ".join(["python -m experiments.tune", *sys.argv[1:]]),
            "tuning_yaml": str(Path(tuning_path).resolve().relative_to(ROOT))
            if Path(tuning_path).resolve().is_relative_to(ROOT) else str(tuning_path),
            "tuning_yaml_sha256": hashlib.sha256(Path(tuning_path).read_bytes()).hexdigest()}


def write_outputs(scores: Any, selection: list[dict[str, Any]], tuning: Mapping[str, Any], tuning_path: Path,
                  snapshot: Path = SNAPSHOT, code: str = "") -> str:
    """runs.csv, selection.json, selection.md under ``snapshot``; returns the YAML snippet."""
    from experiments.io import write_json_atomic, write_text_atomic
    snapshot = Path(snapshot)
    snapshot.mkdir(parents=True, exist_ok=True)
    write_text_atomic(snapshot / "runs.csv", scores.to_csv(index=False))
    for s in selection:   # what the selected configuration ran with (its seeds' summary.json)
        rows = scores[(scores["algo"] == s["algo"]) & (scores["env"] == s["env"]) & (scores["config"] == s["selected"])]
        s["ran_with"] = next((json.loads(f.read_text())["hyperparams"] for d in rows["run_dir"]
                              if (f := ROOT / d / "summary.json").exists()), None)
    entries = hyperparams_entries(selection, tuning)
    snippet = yaml_snippet(entries)
    prov = {**provenance(tuning_path), "code_fingerprint": code, "code_fingerprint_now": code_fingerprint()}
    design = {k: tuning.get(k) for k in ("comparisons", "seeds", "criterion", "grid", "fixed", "matrix", "steps")}
    write_json_atomic(snapshot / "selection.json", {"provenance": prov, "design": design,
                                                    "selection": selection, "hyperparams": entries})
    md = ["# Equal-budget tuning: selection", "",
          f"Design: `{prov['tuning_yaml']}` (pre-registration in its header). Commit `{prov['git_commit']}`, "
          f"{prov['date']}; code fingerprint `{code}`; command `{prov['command']}`. Criterion: mean "
          f"{tuning.get('criterion', 'auc_norm')} over tuning seeds {tuning['seeds']}. Every run: `runs.csv`.", ""]
    for s in selection:
        md += [f"## {s['comparison']}: {s['algo']} on {s['env']}", "",
               f"Selected: **{s['selected'] or '—'}** ({s.get('knobs', '')}); {s['reason']}.", "",
               "| config | knobs | default | mean | per seed |", "|---|---|---|---|---|"]
        for t in s["configs"]:
            mean = "—" if t["mean"] is None else f"{t['mean']:.4f}"
            seeds = ", ".join(f"{k}: {v:.4f}" for k, v in t["per_seed"].items())
            md.append(f"| {t['config']} | {t['knobs']} | {'yes' if t['default'] else ''} | {mean} | {seeds} |")
        md.append("")
    md += ["## Entries for `experiments/config/hyperparams.yaml`", "", "```yaml", snippet.rstrip(), "```", ""]
    write_text_atomic(snapshot / "selection.md", "\n".join(md))
    return snippet


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.tune", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tuning", type=Path, default=TUNING_YAML)
    p.add_argument("--comparison", action="append", default=None, help="only this comparison (repeatable)")
    p.add_argument("--envs", nargs="+", default=None, help="train only these envs (the outputs cover all)")
    p.add_argument("--jobs", type=int, default=1, help="processes (one torch thread each)")
    p.add_argument("--results", type=Path, default=RESULTS, help="where the tuning runs live (git-ignored)")
    p.add_argument("--snapshot", type=Path, default=SNAPSHOT, help="where runs.csv / selection.* go")
    p.add_argument("--code", default=None, help="use the runs of this code fingerprint (default: today's code)")
    p.add_argument("--score-only", action="store_true", help="train nothing; score what exists")
    p.add_argument("--dry-run", action="store_true", help="list the plan and exit")
    a = p.parse_args(argv)
    try:
        tuning = load_tuning(a.tuning)
        catalog = load_catalog()
        code = a.code or code_fingerprint()
        runs = plan(tuning, catalog, a.results, comparisons=a.comparison, code=code)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.dry_run:
        for r in runs:
            done = "done" if (Path(r.out_dir) / "summary.json").exists() else "todo"
            print(f"{done} {r.algo} {r.env} {r.point.id} ({r.point.label}) seed {r.seed} {r.steps} steps → {r.out_dir}")
        return 0
    if not a.score_only:
        run_all([r for r in runs if a.envs is None or r.env in a.envs], a.jobs)
    if not a.score_only and a.code is None and code_fingerprint() != code:
        print(f"warning: the code changed while tuning ({code} → {code_fingerprint()})", file=sys.stderr)
    scores = score(runs, catalog)
    selection = select(scores, tuning.get("criterion", "auc_norm"), len(tuning["seeds"]),
                       float(tuning.get("tie_tolerance", 1e-9)))
    snippet = write_outputs(scores, selection, tuning, a.tuning, a.snapshot, code)
    print(f"wrote {a.snapshot}/runs.csv, selection.json, selection.md\n"
          "# Paste into experiments/config/hyperparams.yaml (replacing these env entries):")
    print(snippet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
