"""The resolved hyper-parameters of a matrix, with where each value came from.

For every env of a matrix config and every algorithm that runs on it (the matrix's own
expansion: exclusions and action spaces applied, its per-algorithm ``set`` overrides included),
``experiments.runner.resolve_with_provenance`` gives the configuration a run gets and, per key,
its source. One table per env: rows = hyper-parameters, columns = algorithms, cell = value and a
marker of its source (``MARKERS``); "≠" marks a value that differs from the other side of a
like-for-like pair of experiments/config/parity.yaml. The parity exceptions and notes follow
the tables.

    python -m experiments.hparams_table --config experiments/config/default.yaml \\
        --md results/tables/hyperparams.md --html results/tables/hyperparams.html
"""
from __future__ import annotations

import argparse
import dataclasses
import html
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from algorithms.base import BaseConfig, config_dict
from experiments.envs import load_catalog
from experiments.hyperparams import Resolved, load_parity, resolve_with_provenance
from experiments.matrix import expand, load_config

# Source kind → (marker, legend). The kind is read from the start of the provenance label.
MARKERS: dict[str, tuple[str, str]] = {
    "default": ("D", "the algorithm's default (its Config dataclass)"),
    "envs.yaml": ("F", "env family defaults (envs.yaml `families:`)"),
    "hyperparams family": ("Y", "experiments/config/hyperparams.yaml, `family:NAME` entry"),
    "hyperparams env": ("E", "experiments/config/hyperparams.yaml, env id entry"),
    "variant": ("V", "the variant's preset (algorithms/registry.py)"),
    "--set": ("S", "the matrix config's `set:` (= --set on the command line)"),
}


def source_kind(label: str) -> str:
    """The ``MARKERS`` key of a provenance label of ``resolve_with_provenance``."""
    if label.startswith("hyperparams.yaml"):
        return "hyperparams family" if "/family:" in label else "hyperparams env"
    for kind in ("default", "envs.yaml", "variant", "--set"):
        if label.startswith(kind):
            return kind
    raise ValueError(f"unknown provenance label {label!r}")


@dataclasses.dataclass
class EnvTable:
    """One env: ``cells[key][algo]`` = (value, provenance label); absent where the algorithm has no such key."""

    env: str
    algos: list[str]
    keys: list[str]
    cells: dict[str, dict[str, tuple[Any, str]]]
    differs: set[tuple[str, str]]        # (key, algo) whose value differs from its parity partner's


def _key_order(resolved: Sequence[Resolved]) -> list[str]:
    keys = [f.name for f in dataclasses.fields(BaseConfig)]
    for r in resolved:
        keys += [k for k in config_dict(r.config) if k not in keys]
    return keys


def build(config: Mapping[str, Any], parity: Mapping[str, Any] | None = None) -> list[EnvTable]:
    """One ``EnvTable`` per env of the matrix ``config``, in the matrix's order."""
    parity = parity if parity is not None else load_parity()
    catalog = load_catalog()
    pairs: dict[str, list[str]] = {}
    for a, b in parity.get("pairs", []):
        pairs.setdefault(a, []).append(b)
        pairs.setdefault(b, []).append(a)
    per_env: dict[str, list[str]] = {}
    for run in expand(config, catalog, check_deps=False):
        if run.algo not in per_env.setdefault(run.env, []):
            per_env[run.env].append(run.algo)
    tables = []
    for env, algos in per_env.items():
        spec = catalog.get(env)
        res = {a: resolve_with_provenance(a, spec, config.get("set", {}).get(a, {})) for a in algos}
        values = {a: config_dict(r.config) for a, r in res.items()}
        keys = _key_order(list(res.values()))
        cells = {k: {a: (values[a][k], res[a].provenance[k]) for a in algos if k in values[a]} for k in keys}
        differs = {(k, a) for k in keys for a in algos if k in values[a]
                   for b in pairs.get(a, []) if b in values and k in values[b] and values[b][k] != values[a][k]}
        tables.append(EnvTable(env, algos, keys, cells, differs))
    return tables


def _fmt(v: Any) -> str:
    if isinstance(v, list | tuple):
        return "×".join(map(str, v)) if v else "[]"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _parity_lines(parity: Mapping[str, Any]) -> list[str]:
    """The exceptions, one-sided keys and notes of parity.yaml as markdown bullets."""
    out = ["Like-for-like pairs (tests/test_parity.py): "
           + ", ".join(f"{a} ↔ {b}" for a, b in parity.get("pairs", [])) + "."]
    exc = parity.get("exceptions") or []
    out.append(f"Documented exceptions (resolved values that differ on purpose): {len(exc) or 'none'}.")
    out += [f"- {e['env']}, {e['pair'][0]} ↔ {e['pair'][1]}: {e['key']} = {e['ours']!r} vs {e['ref']!r}. "
            f"{e['reason']} ({e['source']})" for e in exc]
    out.append("Keys only one side has:")
    out += [f"- `{k}`: {e['reason']} ({e['source']})" for k, e in (parity.get("one_sided") or {}).items()]
    out.append("Notes (not hyper-parameters of either config, or deviations from the published source "
               "shared by both sides):")
    out += [f"- **{n['topic']}** — {' '.join(n['reason'].split())} ({n['source']})" for n in parity.get("notes", [])]
    return out


def legend() -> str:
    return "; ".join(f"{m} = {text}" for m, text in MARKERS.values()) + "; ≠ = differs from its like-for-like partner"


def to_markdown(tables: Sequence[EnvTable], parity: Mapping[str, Any]) -> str:
    lines = ["# Resolved hyper-parameters", "", f"Source of each value: {legend()}.", ""]
    for t in tables:
        lines += [f"## {t.env}", "", "| hyper-parameter | " + " | ".join(t.algos) + " |",
                  "|---|" + "---|" * len(t.algos)]
        for k in t.keys:
            row = []
            for a in t.algos:
                if a not in t.cells[k]:
                    row.append("–")
                    continue
                v, src = t.cells[k][a]
                row.append(f"{_fmt(v)} {MARKERS[source_kind(src)][0]}" + (" ≠" if (k, a) in t.differs else ""))
            lines.append(f"| {k} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines + ["## Parity exceptions", "", *_parity_lines(parity), ""])


CSS = ("body{font-family:system-ui,sans-serif;margin:1.2em;color:#222}table{border-collapse:collapse;"
       "font-size:.85em;margin-bottom:1.5em}th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
       "th{background:#f0f0f0}sup{color:#666;margin-left:.2em}.src-default{color:#777}"
       ".src-hyperparams-env,.src-hyperparams-family{background:#eef5ff}.src-envs-yaml{background:#f3fbef}"
       ".src-variant,.src---set{background:#fff3c4}.differs{outline:2px solid #c00}")


def to_html(tables: Sequence[EnvTable], parity: Mapping[str, Any]) -> str:
    esc = html.escape
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Resolved hyper-parameters</title>",
             f"<style>{CSS}</style></head><body><h1>Resolved hyper-parameters</h1>",
             f"<p>Source of each value (hover a cell for the exact entry): {esc(legend())}.</p>"]
    for t in tables:
        parts.append(f"<h2>{esc(t.env)}</h2><table><thead><tr><th>hyper-parameter</th>"
                     + "".join(f"<th>{esc(a)}</th>" for a in t.algos) + "</tr></thead><tbody>")
        for k in t.keys:
            cells = []
            for a in t.algos:
                if a not in t.cells[k]:
                    cells.append("<td>–</td>")
                    continue
                v, src = t.cells[k][a]
                kind = source_kind(src)
                cls = "src-" + kind.replace(" ", "-").replace(".", "-")
                cls += " differs" if (k, a) in t.differs else ""
                cells.append(f"<td class='{cls}' title='{esc(src)}'>{esc(_fmt(v))}<sup>{MARKERS[kind][0]}</sup></td>")
            parts.append(f"<tr><td>{esc(k)}</td>{''.join(cells)}</tr>")
        parts.append("</tbody></table>")
    parts.append("<h2>Parity exceptions</h2><ul>")
    parts += [f"<li>{esc(line.removeprefix('- '))}</li>" for line in _parity_lines(parity)]
    parts.append("</ul></body></html>")
    return "\n".join(parts)


def write_tables(config: Mapping[str, Any], md: str | Path, html_path: str | Path) -> list[EnvTable]:
    """Resolve the matrix ``config`` and write both tables."""
    parity = load_parity()
    tables = build(config, parity)
    for path, text in ((md, to_markdown(tables, parity)), (html_path, to_html(tables, parity))):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    return tables


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.hparams_table", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="matrix config (experiments/config/*.yaml)")
    p.add_argument("--md", default="results/tables/hyperparams.md")
    p.add_argument("--html", default="results/tables/hyperparams.html")
    a = p.parse_args(argv)
    tables = write_tables(load_config(a.config), a.md, a.html)
    print(f"{len(tables)} envs, {sum(len(t.algos) for t in tables)} algorithm columns → {a.md}, {a.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
