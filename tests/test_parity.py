"""Like-for-like: ours and the SB3 references resolve to the same hyper-parameters on every env.

For every env of envs.yaml and every pair of experiments/config/parity.yaml (ppo ↔ sb3-ppo,
trpo ↔ sb3-trpo, npg ↔ sb3-trpo, npg ↔ trpo), both full configurations are resolved (the
dataclasses ``resolve_hyperparams`` returns, as a run would get them) and compared key by key:

* a key both configs have must resolve equal, unless ``exceptions`` lists exactly that
  (pair, env, key, ours, ref);
* a key only one side has must be listed in ``one_sided`` and resolve to the value the other side
  has built in;
* every exception and every one-sided entry must still be needed (a stale entry fails), and every
  note's evidence must still be in the code it describes.

The comparison itself is checked on a planted difference, and the provenance that
``resolve_with_provenance`` records is checked layer by layer on a hyperparams file written here.
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from algorithms import registry
from algorithms.base import ConfigError, config_dict
from algorithms.core.envs import VecEnv
from experiments.envs import load_catalog
from experiments.runner import HYPERPARAMS_YAML, resolve_hyperparams

PARITY_YAML = Path(__file__).resolve().parents[1] / "experiments" / "config" / "parity.yaml"
PARITY: dict[str, Any] = yaml.safe_load(PARITY_YAML.read_text())
CATALOG = load_catalog()
ENVS = list(CATALOG.envs)
PAIRS = [tuple(p) for p in PARITY["pairs"]]
# What "like-for-like" has to cover (issue 12 §3): the comparison must include at least these.
MUST_COMPARE = {
    "ppo": {"net_arch", "activation", "norm_obs", "norm_reward", "n_envs", "n_steps", "gamma", "gae_lambda",
            "learning_rate", "lr_schedule", "n_epochs", "batch_size", "clip_range", "clip_range_schedule",
            "clip_range_vf", "ent_coef", "vf_coef", "max_grad_norm", "target_kl", "normalize_advantage",
            "log_std_init"},
    "npg": {"net_arch", "activation", "norm_obs", "norm_reward", "n_envs", "n_steps", "gamma", "gae_lambda",
            "learning_rate", "batch_size", "n_critic_updates", "cg_max_steps", "cg_damping", "target_kl",
            "normalize_advantage", "sub_sampling_factor", "log_std_init"},
}
MUST_COMPARE["trpo"] = MUST_COMPARE["npg"] | {"line_search_shrinking_factor", "line_search_max_iter"}


@dataclasses.dataclass(frozen=True)
class Difference:
    env: str
    ours: str
    ref: str
    key: str
    ours_value: Any
    ref_value: Any

    def __str__(self) -> str:
        return f"{self.env}: {self.ours} ↔ {self.ref}: {self.key} = {self.ours_value!r} vs {self.ref_value!r}"


def fields(algo: str) -> set[str]:
    return {f.name for f in dataclasses.fields(registry.get(algo)[0].Config)}


def differences(ours: str, ref: str, env: str, hyperparams_file: Path = HYPERPARAMS_YAML) -> list[Difference]:
    """Every key on which the resolved configs of ``ours`` and ``ref`` on ``env`` disagree: shared
    keys compared with each other, one-sided keys with parity.yaml's built-in value (``None`` there:
    not comparable)."""
    spec = CATALOG.get(env)
    a = config_dict(resolve_hyperparams(ours, spec, {}, hyperparams_file)[1])
    b = config_dict(resolve_hyperparams(ref, spec, {}, hyperparams_file)[1])
    out = [Difference(env, ours, ref, k, a[k], b[k]) for k in sorted(set(a) & set(b)) if a[k] != b[k]]
    for k in sorted(set(a) ^ set(b)):
        built_in = (PARITY["one_sided"].get(k) or {}).get("value", "unlisted")
        if built_in is None:
            continue
        have = a.get(k, b.get(k))
        if built_in == "unlisted" or have != built_in:
            out.append(Difference(env, ours, ref, k, a.get(k, built_in), b.get(k, built_in)))
    return out


def listed(d: Difference, exceptions: list[dict] | None = None) -> bool:
    """Whether parity.yaml (or ``exceptions``) documents exactly this difference, values included."""
    exceptions = PARITY["exceptions"] if exceptions is None else exceptions
    return any([e["pair"][0], e["pair"][1]] == [d.ours, d.ref] and e["env"] == d.env and e["key"] == d.key
               and e["ours"] == d.ours_value and e["ref"] == d.ref_value for e in exceptions)


def stale(exceptions: list[dict], hyperparams_file: Path = HYPERPARAMS_YAML) -> list[dict]:
    """The exceptions that no current difference needs (the settings agree now, or differ otherwise)."""
    return [e for e in exceptions
            if not any(d.key == e["key"] and listed(d, [e])
                       for d in differences(*e["pair"], e["env"], hyperparams_file))]


# --- the comparison ---------------------------------------------------------------------------

def test_pairs_are_the_required_ones():
    assert {("ppo", "sb3-ppo"), ("trpo", "sb3-trpo"), ("npg", "trpo"), ("npg", "sb3-trpo")} <= set(PAIRS)
    assert len(ENVS) >= 15 and {"Acrobot-v1", "Swimmer-v5", "ALE/Pong-v5"} <= set(ENVS)


@pytest.mark.parametrize("ours, ref", PAIRS)
def test_every_field_of_both_configs_is_compared(ours, ref):
    """The compared set is every field with the same name on both dataclasses; it must include
    the settings that define the algorithm, and every key that only one side has must be listed
    in ``one_sided`` (so nothing escapes the comparison unseen)."""
    shared = fields(ours) & fields(ref)
    assert MUST_COMPARE[ours] <= shared, sorted(MUST_COMPARE[ours] - shared)
    assert len(shared) >= 17
    unlisted = (fields(ours) ^ fields(ref)) - set(PARITY["one_sided"])
    assert not unlisted, f"keys only one of {ours}/{ref} has, not in parity.yaml one_sided: {sorted(unlisted)}"


@pytest.mark.parametrize("ours, ref", PAIRS)
def test_pairs_resolve_to_the_same_settings_on_every_env(ours, ref):
    found = [d for env in ENVS for d in differences(ours, ref, env)]
    unlisted = [str(d) for d in found if not listed(d)]
    assert not unlisted, ("hyper-parameters differ (fix hyperparams.yaml, or document the exception in "
                          "experiments/config/parity.yaml):\n  " + "\n  ".join(unlisted))


def test_no_stale_exception():
    for e in PARITY["exceptions"]:
        for k in ("pair", "env", "key", "ours", "ref", "reason", "source"):
            assert e.get(k) not in (None, ""), f"exception {e} lacks {k}"
    assert not stale(PARITY["exceptions"]), "stale parity exceptions (the settings agree or moved)"


def test_no_stale_one_sided_entry():
    used = {k for a, b in PAIRS for k in fields(a) ^ fields(b)}
    for k, entry in PARITY["one_sided"].items():
        assert k in used, f"one_sided {k!r}: every pair has it on both sides now; remove it"
        assert entry.get("reason") and entry.get("source"), k


def test_built_in_clips_are_our_vecenvs():
    """The one-sided ``clip_obs``/``clip_reward`` values are what our VecEnv does (an independent
    read of its signature), and the runner does not pass other values."""
    sig = inspect.signature(VecEnv.__init__).parameters
    assert sig["clip_obs"].default == PARITY["one_sided"]["clip_obs"]["value"]
    assert sig["clip_reward"].default == PARITY["one_sided"]["clip_reward"]["value"]
    from experiments.runner import RunContext
    assert "clip" not in inspect.getsource(RunContext.make_env)


@pytest.mark.parametrize("note", PARITY["notes"], ids=lambda n: n["topic"][:40])
def test_notes_are_sourced_and_their_evidence_is_still_in_the_code(note):
    assert note["reason"].strip() and note["source"].strip() and note["envs"]
    for algo in note["envs"]:
        registry.get(algo)
        envs = note["envs"][algo]
        assert envs == "all" or set(envs) <= set(ENVS), envs
    for ev in note["evidence"]:
        module, _, qual = ev["object"].partition(":")
        obj: Any = importlib.import_module(module)
        for part in filter(None, qual.split(".")):
            obj = getattr(obj, part)
        assert ev["contains"] in inspect.getsource(obj), f"note {note['topic']!r} is stale: {ev}"


def test_the_comparison_catches_a_planted_difference(tmp_path):
    """A hyperparams file where ours stops reading the reference's block on one env: the
    comparison reports exactly the keys whose values then differ."""
    table = yaml.safe_load(HYPERPARAMS_YAML.read_text())
    table["trpo"] = {"Swimmer-v5": {"gamma": 0.99, "cg_max_steps": 25}}
    f = tmp_path / "hp.yaml"
    f.write_text(yaml.safe_dump(table))
    got = {(d.key, d.ours_value, d.ref_value) for d in differences("trpo", "sb3-trpo", "Swimmer-v5", f)}
    # ours: library defaults + these two; ref: zoo mujoco-defaults + γ 0.9999
    assert got == {("gamma", 0.99, 0.9999), ("n_envs", 1, 2), ("n_steps", 2048, 1024),
                   ("n_critic_updates", 10, 20)}
    assert differences("trpo", "sb3-trpo", "CartPole-v1", f)     # no entry at all there now
    needed = {"pair": ["trpo", "sb3-trpo"], "env": "Swimmer-v5", "key": "gamma", "ours": 0.99, "ref": 0.9999}
    moved = {**needed, "ours": 0.98}                       # documents values that no longer hold
    agrees = {**needed, "key": "target_kl", "ours": 0.01, "ref": 0.02}
    assert stale([needed, moved, agrees], f) == [moved, agrees]
    assert stale([needed]) == [needed]                     # with the real file the two sides agree


# --- same_as and provenance ---------------------------------------------------------------------

def _hp(tmp_path: Path, table: dict) -> Path:
    f = tmp_path / "hp.yaml"
    f.write_text(yaml.safe_dump(table))
    return f


def test_same_as_reads_the_other_block_less_keys_the_config_lacks(tmp_path):
    f = _hp(tmp_path, {"trpo": {"CartPole-v1": {"gamma": 0.9, "line_search_max_iter": 3}},
                       "npg": {"same_as": "trpo"}})
    _, cfg = resolve_hyperparams("npg", CATALOG.get("CartPole-v1"), {}, f)
    assert cfg.gamma == 0.9 and not hasattr(cfg, "line_search_max_iter")
    f = _hp(tmp_path, {"trpo": {"CartPole-v1": {"gama": 0.9}}, "npg": {"same_as": "trpo"}})
    with pytest.raises(ConfigError, match="gama"):       # a typo is not dropped
        resolve_hyperparams("npg", CATALOG.get("CartPole-v1"), {}, f)


@pytest.mark.parametrize("table, match", [
    ({"ppo": {"same_as": "sb3-ppo", "CartPole-v1": {"gamma": 0.9}}, "sb3-ppo": {}}, "same_as and other"),
    ({"ppo": {"same_as": "sb3-ppo"}, "sb3-ppo": {"same_as": "ppo"}}, "cycle"),
    ({"ppo": {"same_as": "nothing"}}, "missing"),
])
def test_same_as_refuses_extra_entries_cycles_and_missing_blocks(tmp_path, table, match):
    with pytest.raises(ConfigError, match=match):
        resolve_hyperparams("ppo", CATALOG.get("CartPole-v1"), {}, _hp(tmp_path, table))


def test_provenance_names_the_layer_of_every_key(tmp_path):
    from experiments.runner import resolve_with_provenance
    f = _hp(tmp_path, {"acer": {"family:mujoco": {"c": 5.0, "gamma": 0.95}, "Hopper-v5": {"gamma": 0.98}}})
    r = resolve_with_provenance("acer-no-tr", CATALOG.get("Hopper-v5"), {"learning_rate": 0.01}, f)
    p = r.provenance
    assert set(p) == set(config_dict(r.config))
    assert p["norm_obs"] == "envs.yaml family:mujoco"                 # envs.yaml's mujoco family
    assert p["c"] == "hyperparams.yaml acer/family:mujoco"
    assert p["gamma"] == "hyperparams.yaml acer/Hopper-v5" and r.config.gamma == 0.98
    assert p["trust_region"] == "variant acer-no-tr" and r.config.trust_region is False
    assert p["learning_rate"] == "--set" and r.config.learning_rate == 0.01
    default = registry.get("acer")[0].Config()
    for k, src in p.items():
        if src == "default":
            assert getattr(r.config, k) == getattr(default, k), k


def test_provenance_of_a_pair_reads_one_block():
    from experiments.runner import resolve_with_provenance
    for algo in ("trpo", "npg", "sb3-trpo"):
        p = resolve_with_provenance(algo, CATALOG.get("HalfCheetah-v5"), {}).provenance
        assert p["target_kl"] == "hyperparams.yaml sb3-trpo/HalfCheetah-v5"
        assert p["cg_max_steps"] == "hyperparams.yaml sb3-trpo/family:mujoco"


def test_summary_records_provenance_outside_the_identity(tmp_path):
    from experiments.runner import execute
    out = tmp_path / "run"
    s = execute("ppo", "CartPole-v1", 0, 256, out, {"n_epochs": 1}, progress_bar=False)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["hyperparams_provenance"] == s["hyperparams_provenance"]
    assert set(saved["hyperparams_provenance"]) == set(saved["hyperparams"])
    assert saved["hyperparams_provenance"]["n_epochs"] == "--set"
    assert saved["hyperparams_provenance"]["n_steps"] == "hyperparams.yaml sb3-ppo/CartPole-v1"
    again = execute("ppo", "CartPole-v1", 0, 256, out, {"n_epochs": 1}, progress_bar=False)   # resume check
    assert again["status"] == "ok" and again["steps_done"] == saved["steps_done"]


# --- the resolved-settings table ----------------------------------------------------------------

TABLE_MATRIX = {"profile": "smoke", "seeds": [0], "envs": ["CartPole-v1", "Hopper-v5", "ALE/Pong-v5"],
                "algorithms": ["ppo", "sb3-ppo", "npg", "trpo", "sb3-trpo", "acer-no-tr"],
                "set": {"ppo": {"gamma": 0.95}}, "asymmetric_ok": ["gamma"]}


def _plain(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def test_every_table_cell_is_traced_to_the_entry_it_names():
    """Each cell's value is found again, independently, in the place its provenance names: the
    dataclass default, envs.yaml's family, the hyperparams.yaml entry, the variant's preset, or
    the matrix's ``set``."""
    from experiments.hparams_table import build, source_kind
    raw = yaml.safe_load(HYPERPARAMS_YAML.read_text())
    families = yaml.safe_load((Path(__file__).resolve().parents[1] / "envs.yaml").read_text())["families"]
    tables = build(TABLE_MATRIX, PARITY)
    assert [t.env for t in tables] == TABLE_MATRIX["envs"]
    kinds = set()
    for t in tables:
        for k, row in t.cells.items():
            for algo, (value, src) in row.items():
                kind = source_kind(src)
                kinds.add(kind)
                if kind == "default":
                    expected = getattr(registry.get(algo)[0].Config(), k)
                elif kind == "envs.yaml":
                    expected = families[src.split("family:")[1]]["hyperparams"][k]
                elif kind.startswith("hyperparams"):
                    block, entry = src.removeprefix("hyperparams.yaml ").split("/", 1)
                    expected = raw[block][entry][k]
                elif kind == "variant":
                    expected = registry.get(algo)[1][k]
                else:
                    expected = TABLE_MATRIX["set"][algo][k]
                assert _plain(value) == _plain(expected), (t.env, algo, k, src)
    assert kinds == {"default", "envs.yaml", "hyperparams family", "hyperparams env", "variant", "--set"}


def test_table_marks_pair_differences_and_lists_the_exceptions(tmp_path):
    from experiments.hparams_table import MARKERS, write_tables
    tables = write_tables(TABLE_MATRIX, tmp_path / "h.md", tmp_path / "h.html")
    cart = tables[0]
    assert {("gamma", "ppo"), ("gamma", "sb3-ppo")} <= cart.differs      # the `set` on ppo only
    assert all(k == "gamma" for k, _ in cart.differs)
    md, page = (tmp_path / "h.md").read_text(), (tmp_path / "h.html").read_text()
    assert "| gamma | 0.95 S ≠ |" in md
    for t in tables:
        assert f"## {t.env}" in md and f"<h2>{t.env}</h2>" in page
    for marker, text in MARKERS.values():
        assert f"{marker} = {text}" in md
    for note in PARITY["notes"]:
        assert note["topic"] in md
    for k in PARITY["one_sided"]:
        assert f"`{k}`" in md
