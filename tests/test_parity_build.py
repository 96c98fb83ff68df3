"""Like-for-like, at build level: what the constructed objects use, not what the configs say.

``tests/test_parity.py`` compares resolved configurations; ours read the references' blocks of
hyperparams.yaml (``same_as``), so that comparison agrees almost by construction. Here both sides
of each pair (ppo ↔ sb3-ppo, trpo ↔ sb3-trpo, npg ↔ sb3-trpo) are *built* through the runner's
``RunContext`` (same env constructor, no training) on every env of envs.yaml whose optional
packages are installed, and what each object will use is read back from it:

* ours: the VecEnv (``n``, ``norm_obs``/``norm_reward``, ``gamma``, ``clip_obs``/``clip_reward``),
  the rollout buffer's T, the optimiser (lr, Adam ε), ``PPO.schedules`` (α and ε at progress
  p = 1 − t/B), the network modules, log σ; the rest (λ, batch size, CG, line search, …) is read
  from ``algo.cfg`` at its use site, so the config object is what the algorithm uses;
* SB3: ``model.n_envs``, ``model.rollout_buffer`` (T, γ, λ), ``model.lr_schedule(p)``,
  ``model.clip_range(p)``, the attributes ``train()`` reads, the optimiser, ``VecNormalize``'s
  flags, γ and clips, the policy modules, ``policy.log_std``.

Networks are compared as their leaf modules in order (Linear/Conv2d shapes, activations; Flatten
left out) for the actor (trunk + head) and the critic (trunk + head), the number of parameters
they share, and each weight's orthogonal-init gain g (an orthogonal W·g has every singular
value equal to g) with zero biases.

Atari: one game. The four games of envs.yaml resolve through ``family:atari`` alone (checked
below), and building the Atari PPO pair took ≈ 8 s on the 2-core machine (8 envs per side), so
ALE/Pong-v5 stands for the family.
"""
from __future__ import annotations

import dataclasses
import functools
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

from algorithms.base import ConfigError
from experiments.envs import check_dependencies, load_catalog
from experiments.runner import HYPERPARAMS_YAML, RunContext, resolve_hyperparams

CATALOG = load_catalog()
ATARI = [e for e in CATALOG.envs if CATALOG.get(e).family == "atari"]
ENVS = [e for e in CATALOG.envs if e not in ATARI[1:]]
PAIRS = [("ppo", "sb3-ppo"), ("trpo", "sb3-trpo"), ("npg", "sb3-trpo")]
TOTAL = 1000                  # the stub budget: progress p = 1 − t / TOTAL
PROGRESS = (1.0, 0.5)


def _gain(w: torch.Tensor) -> tuple[float, float]:
    """(largest, smallest) singular value of ``w`` as a matrix (out, in·k·k), 3 decimals."""
    s = torch.linalg.svdvals(w.detach().reshape(w.shape[0], -1).double())
    return round(float(s.max()), 3), round(float(s.min()), 3)


def leaves(*modules: nn.Module) -> list[tuple]:
    """The leaf modules of ``modules`` in order: Linear/Conv2d as (kind, shape, init gain),
    activations by class name; Flatten (a reshape) and empty Sequentials (the identity) left out."""
    out: list[tuple] = []
    for m in modules:
        for leaf in m.modules():
            if list(leaf.children()) or isinstance(leaf, nn.Flatten | nn.Sequential):
                continue
            if isinstance(leaf, nn.Linear):
                out.append(("Linear", leaf.in_features, leaf.out_features, _gain(leaf.weight),
                            bool((leaf.bias == 0).all())))
            elif isinstance(leaf, nn.Conv2d):
                out.append(("Conv2d", leaf.in_channels, leaf.out_channels, leaf.kernel_size, leaf.stride,
                            _gain(leaf.weight), bool((leaf.bias == 0).all())))
            else:
                out.append((type(leaf).__name__,))
    return out


def _shared(actor: list[nn.Module], critic: list[nn.Module]) -> int:
    """Number of parameter tensors the actor and the critic have in common."""
    a = {id(p) for m in actor for p in m.parameters()}
    return sum(id(p) in a for m in critic for p in m.parameters())


def _normalisation(norm_obs: bool, norm_reward: bool, gamma: float, clip_obs: float, clip_reward: float) -> dict:
    """What the env wrapper does to observations and rewards (γ and clips only where used)."""
    out: dict[str, Any] = {"norm_obs": norm_obs, "norm_reward": norm_reward}
    if norm_obs:
        out["clip_obs"] = clip_obs
    if norm_reward:
        out.update(gamma=gamma, clip_reward=clip_reward)
    return out


def _ours(algo: Any) -> dict[str, Any]:
    cfg, env, pi = algo.cfg, algo.env, algo.policy
    opt = algo.opt if hasattr(algo, "opt") else algo.critic_opt
    used: dict[str, Any] = {
        "n_envs": env.n, "n_steps": algo.buffer.T, "batch_size": cfg.batch_size, "gamma": cfg.gamma,
        "gae_lambda": cfg.gae_lambda, "normalize_advantage": cfg.normalize_advantage, "target_kl": cfg.target_kl,
        "optimizer_lr": opt.lr, "adam_eps": opt.eps,
        "env": _normalisation(env.norm_obs, env.norm_reward, env.gamma, env.clip_obs, env.clip_reward),
        "actor": leaves(pi.pi_trunk, pi.pi.linear), "critic": leaves(pi.v_trunk, pi.v),
        "shared_params": _shared([pi.pi_trunk, pi.pi], [pi.v_trunk, pi.v]),
        "log_std": pi.pi.log_std.tolist() if hasattr(pi.pi, "log_std") else None,
    }
    if algo.name == "ppo":
        for p in PROGRESS:
            lr, eps = algo.schedules(round((1 - p) * TOTAL))
            used[f"lr@{p}"], used[f"clip_range@{p}"] = lr, eps
        used.update(n_epochs=cfg.n_epochs, clip_range_vf=cfg.clip_range_vf, ent_coef=cfg.ent_coef,
                    vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm)
    else:   # NPG/TRPO: a constant critic learning rate
        used.update({f"lr@{p}": cfg.learning_rate for p in PROGRESS})
        used.update(cg_max_steps=cfg.cg_max_steps, cg_damping=cfg.cg_damping, n_critic_updates=cfg.n_critic_updates,
                    sub_sampling_factor=cfg.sub_sampling_factor)
        if algo.name == "trpo":
            used.update(line_search_shrinking_factor=cfg.line_search_shrinking_factor,
                        line_search_max_iter=cfg.line_search_max_iter)
    return used


def _reference(algo: Any) -> dict[str, Any]:
    from stable_baselines3.common.vec_env import VecNormalize
    m, venv, pol = algo.model, algo.venv, algo.model.policy
    vn = venv if isinstance(venv, VecNormalize) else None
    buf = m.rollout_buffer
    actor = [pol.pi_features_extractor, pol.mlp_extractor.policy_net, pol.action_net]
    critic = [pol.vf_features_extractor, pol.mlp_extractor.value_net, pol.value_net]
    used: dict[str, Any] = {
        "n_envs": m.n_envs, "n_steps": buf.buffer_size, "batch_size": m.batch_size, "gamma": buf.gamma,
        "gae_lambda": buf.gae_lambda, "normalize_advantage": m.normalize_advantage, "target_kl": m.target_kl,
        "optimizer_lr": pol.optimizer.param_groups[0]["lr"], "adam_eps": pol.optimizer.defaults["eps"],
        "env": _normalisation(vn is not None and vn.norm_obs, vn is not None and vn.norm_reward,
                              vn.gamma if vn else None, vn.clip_obs if vn else None, vn.clip_reward if vn else None),
        "actor": leaves(*actor), "critic": leaves(*critic), "shared_params": _shared(actor, critic),
        "log_std": pol.log_std.tolist() if hasattr(pol, "log_std") else None,
        **{f"lr@{p}": m.lr_schedule(p) for p in PROGRESS},
    }
    if algo.name == "sb3-ppo":
        used.update({f"clip_range@{p}": m.clip_range(p) for p in PROGRESS})
        used.update(n_epochs=m.n_epochs, clip_range_vf=m.clip_range_vf(1.0) if m.clip_range_vf else None,
                    ent_coef=m.ent_coef, vf_coef=m.vf_coef, max_grad_norm=m.max_grad_norm)
    else:
        # sb3-contrib's KL is the per-state KL / d (algorithms/sb3_ref.py::SB3TRPO): δ and λ in
        # the per-state units ours use are its target_kl and cg_damping times d
        d = algo.kl_dims()
        used.update(target_kl=round(m.target_kl * d, 12), cg_damping=round(m.cg_damping * d, 12))
        used.update(cg_max_steps=m.cg_max_steps, n_critic_updates=m.n_critic_updates,
                    sub_sampling_factor=m.sub_sampling_factor,
                    line_search_shrinking_factor=m.line_search_shrinking_factor,
                    line_search_max_iter=m.line_search_max_iter)
    return used


@functools.cache
def used(algo: str, env_id: str) -> dict[str, Any]:
    """Build ``algo`` on ``env_id`` as a run would (no training) and read back what it uses."""
    spec = dataclasses.replace(CATALOG.get(env_id), eval_episodes=1)
    try:
        check_dependencies(spec)
    except ConfigError as e:
        pytest.skip(str(e))
    cls, cfg = resolve_hyperparams(algo, spec, {})
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as out:
        run = RunContext(algo, spec, 0, TOTAL, Path(out), progress_bar=False)
        try:
            built = cls(cfg, run)
            got = _reference(built) if algo.startswith("sb3-") else _ours(built)
            if algo.startswith("sb3-"):
                built.venv.close()
        finally:
            run.close()
    return got


@pytest.mark.parametrize("env_id", ENVS)
@pytest.mark.parametrize("ours, ref", PAIRS, ids=lambda x: x)
def test_built_objects_use_the_same_settings(ours, ref, env_id):
    a, b = used(ours, env_id), used(ref, env_id)
    keys = set(a)
    assert keys <= set(b), sorted(keys - set(b))
    assert len(keys) >= 18
    diff = {k: (a[k], b[k]) for k in sorted(keys) if a[k] != b[k]}
    assert not diff, f"{ours} vs {ref} on {env_id}, built objects differ: {diff}"


def test_one_atari_game_stands_for_the_family():
    """No hyperparams.yaml block of the pairs has an entry for one Atari id: all four games
    resolve through family:atari, so the built objects differ only by the game's action count."""
    table = yaml.safe_load(HYPERPARAMS_YAML.read_text())
    for block in ("sb3-ppo", "sb3-trpo", "ppo", "trpo", "npg"):
        assert not set(table.get(block) or {}) & set(ATARI), block
    assert len(ATARI) >= 2 and ATARI[0] in ENVS


def test_the_build_comparison_sees_a_planted_difference():
    """The read-back is of the objects, not of the configs: a network changed after construction
    (a ReLU for a Tanh, log σ moved) and a VecEnv γ changed show up as differences."""
    spec = dataclasses.replace(CATALOG.get("Pendulum-v1"), eval_episodes=1)
    cls, cfg = resolve_hyperparams("ppo", spec, {"norm_reward": True})
    with tempfile.TemporaryDirectory() as out:
        run = RunContext("ppo", spec, 0, TOTAL, Path(out), progress_bar=False)
        algo = cls(cfg, run)
        before = _ours(algo)
        algo.policy.pi_trunk[1][1] = nn.ReLU()
        with torch.no_grad():
            algo.policy.pi.log_std.fill_(-0.5)
        algo.env.gamma = 0.5
        after = _ours(algo)
        run.close()
    assert {k for k in before if before[k] != after[k]} == {"actor", "log_std", "env"}
    assert ("ReLU",) in after["actor"] and ("Tanh",) in before["actor"]


# --- a matrix that overrides one side of a pair ----------------------------------------------------

def test_a_matrix_set_on_one_side_of_a_pair_is_an_error_unless_listed():
    from experiments.matrix import expand
    base = {"profile": "smoke", "seeds": [0], "envs": ["CartPole-v1"], "algorithms": ["ppo", "sb3-ppo", "npg", "trpo"]}
    expand({**base, "set": {"ppo": {"gamma": 0.95}, "sb3-ppo": {"gamma": 0.95}}}, check_deps=False)   # symmetric
    with pytest.raises(ConfigError, match=r"ppo.*sb3-ppo.*gamma.*asymmetric_ok"):
        expand({**base, "set": {"ppo": {"gamma": 0.95}}}, check_deps=False)
    with pytest.raises(ConfigError, match=r"ppo.*sb3-ppo.*n_epochs"):
        expand({**base, "set": {"ppo": {"n_epochs": 3}, "sb3-ppo": {"n_epochs": 4}}}, check_deps=False)
    with pytest.raises(ConfigError, match=r"npg.*trpo.*cg_damping"):
        expand({**base, "set": {"trpo": {"cg_damping": 0.2, "line_search_max_iter": 3}}}, check_deps=False)
    # a key only one side has (NPG has no line search) is no asymmetry; a listed key is allowed
    expand({**base, "set": {"trpo": {"line_search_max_iter": 3}}}, check_deps=False)
    expand({**base, "set": {"ppo": {"gamma": 0.95}}, "asymmetric_ok": ["gamma"]}, check_deps=False)
    expand({**base, "algorithms": ["ppo"], "set": {"ppo": {"gamma": 0.95}}}, check_deps=False)   # no partner
    with pytest.raises(ConfigError, match="asymmetric_ok"):
        expand({**base, "asymmetric_ok": ["gama"]}, check_deps=False)


def test_every_shipped_matrix_config_passes_the_pair_check(root):
    from experiments.matrix import expand, load_config
    for path in sorted((root / "experiments" / "config").glob("*.yaml")):
        cfg = load_config(path)
        if isinstance(cfg, dict) and {"profile", "seeds", "algorithms"} <= set(cfg):
            expand(cfg, check_deps=False)
