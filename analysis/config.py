"""Light-weight names and configuration of the analysis (imported by the Snakefile at parse
time: yaml only, no pandas / matplotlib)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

CLAIMS_YAML = Path(__file__).resolve().parent.parent / "experiments" / "config" / "claims.yaml"

FIGURES = {
    "learning_curves": "learning_curves.png",
    "sample_efficiency": "sample_efficiency.png",
    "acer_ablation": "acer_ablation.png",
    "monotonic": "monotonic_improvement.png",
    "kl": "kl_vs_delta.png",
    "profiles": "rliable_profiles_iqm.png",
    "wallclock": "learning_curves_wallclock.png",
}
TOY_FIGURES = {"gaussian": "toy_gaussian_ngd_vs_gd.png", "npg": "toy_npg_vs_pg.png",
               "compatible": "toy_compatible_nac.png", "ng_approx": "toy_ng_approx_cg_kfac.png"}
TOY_FILES = {
    "gaussian_trajectories": "gaussian_trajectories.csv",
    "gaussian_summary": "gaussian_summary.csv",
    "npg_curve": "npg_vs_pg.csv",
    "npg_summary": "npg_vs_pg_summary.csv",
    "compatible": "compatible.csv",
    "ng_approx": "ng_approx.csv",
}
HTML_TABLES = ("claims", "runs", "stats", "poi")


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any] | None) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def load_config(overrides: Mapping[str, Any] | None = None, path: str | Path = CLAIMS_YAML) -> dict[str, Any]:
    """claims.yaml, overridden key by key by the experiment config's ``claims:`` section."""
    return deep_merge(yaml.safe_load(Path(path).read_text()) or {}, overrides)
