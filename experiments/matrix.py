"""The experiment matrix: seeds × envs × algorithms, validated before any job starts."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from algorithms import registry
from algorithms.base import Algorithm, ConfigError
from experiments.envs import EnvCatalog, check_dependencies, load_catalog, validate_schema


@dataclasses.dataclass(frozen=True)
class RunSpec:
    algo: str
    env: str
    seed: int
    steps: int

    @property
    def env_slug(self) -> str:
        return env_slug(self.env)

    def out_dir(self, results: str = "results") -> str:
        return f"{results}/runs/{self.algo}/{self.env_slug}/{self.seed}"


def env_slug(env_id: str) -> str:
    """A path-safe env name: "ALE/Pong-v5" → "ALE_Pong-v5"."""
    return env_id.replace("/", "_")


def expand(config: Mapping[str, Any], catalog: EnvCatalog | None = None, check_deps: bool = True) -> list[RunSpec]:
    """Validate ``config`` (schema, names, dependencies, hyper-parameters) and list its runs."""
    validate_schema(dict(config), "config.schema.yaml", "experiment config")
    catalog = catalog or load_catalog()
    envs: list[str] = []
    for s in config.get("suites", []):
        envs += [e for e in catalog.suite(s) if e not in envs]
    envs += [e for e in config.get("envs", []) if e not in envs]
    if not envs:
        raise ConfigError("experiment config selects no env: give `suites` or `envs`")
    specs = {e: catalog.get(e) for e in envs}
    for e in (*config.get("steps", {}), *config.get("eval_freq", {})):
        catalog.get(e)
    classes = {a: registry.get(a)[0] for a in config["algorithms"]}
    for a in config.get("set", {}):
        if a not in classes:
            raise ConfigError(f"`set` names algorithm {a!r}, which is not in `algorithms` ({', '.join(classes)})")
    check_pair_symmetry(config, classes)
    excluded = {(x.get("algo"), x.get("env")) for x in config.get("exclude", [])}
    for a, e in excluded:
        if a is not None:
            registry.get(a)
        if e is not None:
            catalog.get(e)
    if check_deps:
        for s in specs.values():
            check_dependencies(s)
    from experiments.runner import resolve_hyperparams
    runs = []
    for e, spec in specs.items():
        steps = config.get("steps", {}).get(e, budget_of(spec, config["profile"]))
        for a, cls in classes.items():
            if (a, e) in excluded or (a, None) in excluded or (None, e) in excluded:
                continue
            if not (cls.discrete if spec.actions == "discrete" else cls.continuous):
                continue
            resolve_hyperparams(a, spec, config.get("set", {}).get(a, {}))   # fail early on bad keys
            runs += [RunSpec(a, e, seed, steps) for seed in seeds_of(config, a, e)]
    if not runs:
        raise ConfigError("experiment config yields no runs (check algorithms, envs and exclude)")
    _check_extra_seeds(config, envs, {(r.algo, r.env) for r in runs})
    return runs


def seeds_of(config: Mapping[str, Any], algo: str, env: str) -> list[int]:
    """The seeds of (algo, env): ``seeds``, plus every ``more_seeds`` entry naming both (an entry
    without ``algorithms`` / ``envs`` names all), plus the ``monotonic`` block's seeds where it
    names both — claim C3's J(π) stream is a second evaluation of the same runs, not other runs."""
    out = set(config["seeds"])
    for x in config.get("more_seeds", []):
        if algo in x.get("algorithms", [algo]) and env in x.get("envs", [env]):
            out |= set(x["seeds"])
    mono = config.get("monotonic") or {}
    if algo in mono.get("algorithms", []) and env in mono.get("envs", []):
        out |= set(mono["seeds"])
    return sorted(int(s) for s in out)


def _check_extra_seeds(config: Mapping[str, Any], envs: list[str], pairs: set[tuple[str, str]]) -> None:
    """``more_seeds`` and ``monotonic`` may only name the matrix's algorithms and envs; a ``more_seeds``
    entry must add seeds to at least one pair the matrix runs; every (algorithm, env) of ``monotonic``
    must be such a pair (not excluded, its action space) and its algorithms must sample
    (``predict_stochastic``): C3's stream is evaluated on the matrix's own runs."""
    algos = list(config["algorithms"])
    named = [("more_seeds", x) for x in config.get("more_seeds", [])]
    named += [("monotonic", config["monotonic"])] if config.get("monotonic") else []
    for where, x in named:
        bad = sorted(set(x.get("algorithms", [])) - set(algos)) + sorted(set(x.get("envs", [])) - set(envs))
        if bad:
            raise ConfigError(f"`{where}` names {bad}, which the matrix does not have (its `algorithms` and envs)")
    for x in config.get("more_seeds", []):
        if not any((a, e) in pairs for a in x.get("algorithms", algos) for e in x.get("envs", envs)):
            raise ConfigError(f"`more_seeds` entry {dict(x)} names no (algorithm, env) the matrix runs: "
                              "it adds nothing")
    mono = config.get("monotonic") or {}
    blind = sorted(a for a in mono.get("algorithms", [])
                   if registry.get(a)[0].predict_stochastic is Algorithm.predict_stochastic)
    if blind:
        raise ConfigError(f"`monotonic` names {blind}, which do not implement predict_stochastic: their J(π) "
                          "of the sampled policy cannot be estimated")
    missing = sorted(f"{a} on {e}" for a in mono.get("algorithms", []) for e in mono.get("envs", [])
                     if (a, e) not in pairs)
    if missing:
        raise ConfigError(f"`monotonic` names {', '.join(missing)}, which the matrix excludes or cannot run: "
                          "C3's J(π) stream is evaluated on runs of the matrix")


def budget_of(spec, profile: str) -> int:
    """The env's budget for a profile; `replication` runs at the published (`paper`) budgets."""
    return spec.budget["paper" if profile == "replication" else profile]


def check_pair_symmetry(config: Mapping[str, Any], classes: Mapping[str, type]) -> None:
    """A like-for-like pair (parity.yaml ``pairs``) with both sides in the matrix must get the same
    ``set`` overrides on every key both configs have, unless ``asymmetric_ok`` lists the key: an
    override of one side only would silently break the comparison the pair exists for."""
    from experiments.hyperparams import load_parity
    fields = {a: {f.name for f in dataclasses.fields(cls.Config)} for a, cls in classes.items()}
    allowed = set(config.get("asymmetric_ok", []))
    unknown = allowed - set().union(*fields.values())
    if unknown:
        raise ConfigError(f"asymmetric_ok names unknown hyper-parameter(s) {sorted(unknown)}")
    sets = config.get("set", {})
    for a, b in load_parity()["pairs"]:
        if a not in classes or b not in classes:
            continue
        sa, sb = sets.get(a, {}), sets.get(b, {})
        missing = object()
        keys = sorted(k for k in (set(sa) | set(sb)) & fields[a] & fields[b] - allowed
                      if sa.get(k, missing) != sb.get(k, missing))
        if keys:
            raise ConfigError(f"like-for-like pair {a} ↔ {b}: `set` differs on {keys} ({a}: "
                              f"{ {k: sa.get(k) for k in keys} }, {b}: { {k: sb.get(k) for k in keys} }); "
                              "set both sides alike, or list the keys under `asymmetric_ok` if intended")


def load_config(path: str | Path) -> dict[str, Any]:
    import yaml
    return yaml.safe_load(Path(path).read_text())


def stale_runs(runs: Mapping[str, RunSpec], config: Mapping[str, Any], catalog: EnvCatalog | None = None,
               limit: int = 10, j_eval: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """Finished runs (summary.json present) whose recorded settings are no longer what the matrix
    resolves them to — hyper-parameters, budget, evaluation protocol — one line each.

    Committed per-run outputs are what the DAG sees as done; without this check a run made under
    settings that have since changed (envs.yaml, hyperparams.yaml, the config's ``set``) would be
    counted as if made under the new ones. A key the run did not record (a hyper-parameter added
    later) must sit at its default, which reproduces the behaviour from before it existed.
    ``j_eval``: run dir → the J(π) stream it must have recorded (``experiments.monotonic``)."""
    import json

    from experiments.envs import eval_protocol
    from experiments.hyperparams import changed_keys
    from experiments.runner import resolve_hyperparams

    catalog = catalog or load_catalog()
    out = []
    for d, r in runs.items():
        p = Path(d) / "summary.json"
        if not p.exists():
            continue
        try:
            s = json.loads(p.read_text())
        except (OSError, ValueError):
            continue                     # unreadable: the runner's resume logic reports it
        spec = catalog.get(r.env)
        _, cfg = resolve_hyperparams(r.algo, spec, config.get("set", {}).get(r.algo, {}))
        was = s.get("hyperparams") or {}   # a summary that recorded none (not the runner's) is not checked
        diff = changed_keys(was, cfg) if was else []
        if int(s.get("total_steps", r.steps)) != r.steps:
            diff.append("total_steps")
        ev = {"freq": config.get("eval_freq", {}).get(r.env, spec.eval_freq),
              "episodes": config.get("eval_episodes", spec.eval_episodes),
              **eval_protocol(spec)}
        if "eval" in s and any((s.get("eval") or {}).get(k) != v for k, v in ev.items()):
            diff.append("eval")
        if j_eval is not None and d in j_eval and s.get("j_eval") != dict(j_eval[d]):
            diff.append("j_eval (claim C3's J(π) stream)")
        if diff:
            out.append(f"{d}: {', '.join(diff)}")
            if len(out) >= limit:
                break
    return out
