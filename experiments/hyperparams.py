"""Hyper-parameter resolution: what configuration a run gets, and where each value came from.

Precedence (later wins): the algorithm's dataclass defaults < the env family's settings in
``envs.yaml`` < ``experiments/config/hyperparams.yaml`` (``family:NAME``, then the env id; a
variant reads its base algorithm's block; ``ALGO: {same_as: OTHER}`` reads OTHER's) < the
variant's preset < ``--set`` (which may not contradict the preset). ``tests/test_parity.py``
checks that ours and the SB3 references resolve to the same settings on every env.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from algorithms import registry
from algorithms.base import Algorithm, BaseConfig, ConfigError, build_config
from experiments.envs import EnvSpec
from experiments.envs import _UniqueKeyLoader as UniqueKeyLoader  # duplicate keys are an error

HYPERPARAMS_YAML = Path(__file__).resolve().parent / "config" / "hyperparams.yaml"
PARITY_YAML = Path(__file__).resolve().parent / "config" / "parity.yaml"


def load_parity(path: Path = PARITY_YAML) -> dict[str, Any]:
    """experiments/config/parity.yaml: the like-for-like ``pairs``, one-sided keys, exceptions, notes."""
    return yaml.safe_load(path.read_text())


@dataclass(frozen=True)
class Resolved:
    """A resolved configuration and, for every hyper-parameter, where its value came from:
    ``default`` (the dataclass), ``envs.yaml family:NAME``, ``hyperparams.yaml BLOCK/family:NAME``,
    ``hyperparams.yaml BLOCK/ENV_ID`` (BLOCK: the block read, after ``same_as``), ``variant NAME``
    or ``--set`` (``experiments.hparams_table.source_kind`` classifies them)."""

    cls: type[Algorithm]
    config: BaseConfig
    provenance: dict[str, str]


def hyperparams_block(table: Mapping[str, Any], algo: str, cls: type[Algorithm]) -> tuple[str, dict[str, Any]]:
    """hyperparams.yaml's entries for ``algo``: its own block, else its base algorithm's (a
    variant). ``ALGO: {same_as: OTHER}`` reads OTHER's block instead (chains allowed, cycles an
    error); such a block may hold nothing else, so the two cannot drift apart. Keys that OTHER's
    config has and ``algo``'s lacks are dropped (npg reads sb3-trpo's entries less the line
    search); any other unknown key stays, for ``build_config`` to reject. Returns (block name, block)."""
    name = algo if algo in table else registry.base_name(algo)
    block, seen = table.get(name) or {}, [name]
    while isinstance(block, Mapping) and "same_as" in block:
        if set(block) != {"same_as"}:
            raise ConfigError(f"hyperparams.yaml: block {name!r} has same_as and other entries "
                              f"({sorted(set(block) - {'same_as'})}); put them in {block['same_as']!r}")
        name = str(block["same_as"])
        if name in seen or name not in table:
            raise ConfigError(f"hyperparams.yaml: same_as chain {' → '.join([*seen, name])} is a cycle "
                              "or names a missing block")
        seen.append(name)
        block = table.get(name) or {}
    if name == seen[0]:
        return name, dict(block)
    own = set(cls.Config.__dataclass_fields__)
    theirs = set(registry.get(name)[0].Config.__dataclass_fields__)
    return name, {entry: {k: v for k, v in (vals or {}).items() if k in own or k not in theirs}
                  for entry, vals in block.items()}


def resolve_with_provenance(algo: str, spec: EnvSpec, overrides: Mapping[str, Any],
                            hyperparams_file: Path = HYPERPARAMS_YAML) -> Resolved:
    """Config = dataclass defaults < env family (envs.yaml) < hyperparams.yaml (``family:NAME``
    then env id; a variant reads its base algorithm's entries; ``same_as`` as in
    ``hyperparams_block``) < the variant's preset < ``overrides`` (--set), which may not
    contradict the preset. Records the source of every key."""
    cls, preset = registry.get(algo)
    table = (yaml.load(hyperparams_file.read_text(), Loader=UniqueKeyLoader) or {}) if hyperparams_file.exists() else {}
    merged: dict[str, Any] = {}
    source: dict[str, str] = {}

    def apply(values: Mapping[str, Any], label: str) -> None:
        merged.update(values)
        source.update(dict.fromkeys(values, label))

    fields = set(cls.Config.__dataclass_fields__)
    apply({k: v for k, v in spec.hyperparams.items() if k in fields}, f"envs.yaml family:{spec.family}")
    block_name, block = hyperparams_block(table, algo, cls)
    for entry in (f"family:{spec.family}", spec.id):
        apply(block.get(entry) or {}, f"hyperparams.yaml {block_name}/{entry}")
    clash = sorted(k for k, v in overrides.items() if k in preset and str(v).lower() != str(preset[k]).lower())
    if clash:
        raise ConfigError(f"variant {algo!r} fixes {', '.join(f'{k}={preset[k]!r}' for k in clash)}; "
                          "overriding it would change what the variant is. Use the base algorithm instead.")
    apply(preset, f"variant {algo}")   # a variant's defining settings win over the per-env tables
    apply(overrides, "--set")
    cfg = build_config(cls.Config, merged, where=f" for {algo} on {spec.id}")
    provenance = {f.name: source.get(f.name, "default") for f in dataclasses.fields(cfg)}
    return Resolved(cls, cfg, provenance)


def resolve_hyperparams(algo: str, spec: EnvSpec, overrides: Mapping[str, Any],
                        hyperparams_file: Path = HYPERPARAMS_YAML) -> tuple[type[Algorithm], BaseConfig]:
    """The class and config of ``resolve_with_provenance`` (same precedence), without the sources."""
    r = resolve_with_provenance(algo, spec, overrides, hyperparams_file)
    return r.cls, r.config


def changed_keys(recorded: Mapping[str, Any], config: BaseConfig) -> list[str]:
    """Hyper-parameters whose value recorded by a run (summary.json ``hyperparams``) differs from
    ``config`` as resolved now. A key the run did not record (added later) counts as changed only
    when it is not at its default, which reproduces the behaviour from before it existed; a
    recorded key the config no longer has counts as changed."""
    import json

    from algorithms.base import config_dict

    now = json.loads(json.dumps(config_dict(config)))
    default = json.loads(json.dumps(config_dict(type(config)())))
    return ([k for k in now if (recorded[k] != now[k] if k in recorded else now[k] != default[k])]
            + [k for k in recorded if k not in now])
