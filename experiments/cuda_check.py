"""One bounded check of the CUDA path of our algorithms (PPO, TRPO, NPG, ACER), for a lent GPU machine.

    python -m experiments.cuda_check --out DIR [--device cuda|cpu] [--scale 1.0]

What it checks, and why (one record per check in DIR/cuda_check.json and DIR/cuda_check.md):

* agreement (first: fast, independent of rollout RNG): the same network on CPU and on the device, loaded
  from one state_dict, fed one batch drawn from a seeded NumPy RNG. TRPO/NPG: the natural step Δθ of the
  project's ``NPG.step_problem`` (flat_grad, kl_hessian_fvp, cg), cosine ≥ 0.999 and relative norm
  difference ≤ 1e-3, and ``TRPO.take_step`` accepts a step whose exact KL is ≤ δ on the device. PPO: the
  clipped-surrogate minibatch loss and its gradient (rel. diff ≤ 1e-4; the loss is inline in
  ``PPO.learn``, so its lines are restated around ``clipped_surrogate``); the MinAtar CNN in strict
  float32, cuDNN's TF32 difference reported. ACER: ``retrace`` and ``trust_region`` (max abs diff
  ≤ 1e-5, kᵀz* ≤ δ + 1e-5 on the device) and the whole ``discrete_terms`` / ``continuous_terms`` update.
* device_helpers: the sampling, prediction and GAE helpers a run on the device goes through, each tried
  once with the policy or tensors on the device (one list of what breaks, rather than a run's first error).
* runs: short runs through the runner (``experiments.runner.execute``, device as given): status ok,
  summary.json's device, progress.csv finite (NaN only where the runner writes it by design), the
  checkpoint written mid-run loads with ``torch.load(map_location="cpu")``, and the networks' parameters
  really are on the requested device (the runner only hands ``run.device`` to the algorithm).
* timing (information): steps/s of ppo and acer on MinAtar/Breakout-v0, device vs cpu.

Every check runs; an exception is recorded with its traceback. Exit 1 if any check fails, 2 if the
device is cuda and CUDA is unavailable. The JSON and Markdown are rewritten after every check.
"""
from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from algorithms.acer import ACERConfig, DiscreteACERNet, discrete_terms
from algorithms.acer_continuous import SDNet, continuous_terms
from algorithms.core.acer_ops import retrace, trust_region
from algorithms.core.distributions import Categorical, DiagGaussian
from algorithms.core.fisher import flat_grad
from algorithms.core.nets import ActorCritic
from algorithms.core.replay import Trajectory
from algorithms.ppo import clipped_surrogate
from algorithms.trpo import NPG, TRPO, TRPOConfig

RUNS: list[tuple[str, str, int, dict[str, Any]]] = [      # algo, env, steps, --set
    ("ppo", "CartPole-v1", 4096, {}), ("trpo", "CartPole-v1", 4096, {}), ("npg", "CartPole-v1", 4096, {}),
    ("acer", "CartPole-v1", 3000, {}), ("ppo", "Pendulum-v1", 8192, {}), ("trpo", "Pendulum-v1", 4096, {}),
    ("acer", "Pendulum-v1", 2000, {}), ("ppo", "MinAtar/Breakout-v0", 4096, {}),
    ("acer", "MinAtar/Breakout-v0", 3200, {"replay_start": 1280}), ("ppo", "Hopper-v5", 4096, {}),
    ("acktr", "CartPole-v1", 4096, {}), ("acktr", "Pendulum-v1", 4096, {}), ("acktr", "MinAtar/Breakout-v0", 3200, {}),
    ("sb3-ppo", "CartPole-v1", 4096, {}), ("sb3-a2c", "MinAtar/Breakout-v0", 4096, {}),   # the references
]
NAN_OK = {"episode_return", "mean_rho_replay", "frac_truncated_replay", "explained_variance"}   # by design
F32 = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
SPACES = {"discrete": (F32, gym.spaces.Discrete(2)),
          "continuous": (gym.spaces.Box(-np.inf, np.inf, (3,), np.float32), gym.spaces.Box(-2, 2, (1,), np.float32)),
          "minatar": (gym.spaces.Box(0, 1, (4, 10, 10), np.uint8), gym.spaces.Discrete(6))}


def cmp(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Cosine, relative norm difference ‖a − b‖/‖a‖ and max |a − b| of two tensors (a: the CPU one)."""
    a, b = a.detach().double().cpu().flatten(), b.detach().double().cpu().flatten()
    n = float(a.norm())
    return {"cos": float(a @ b) / max(n * float(b.norm()), 1e-300), "rel": float((a - b).norm()) / max(n, 1e-300),
            "max_abs": float((a - b).abs().max()) if a.numel() else 0.0}


def ac_args(kind: str) -> tuple[Any, ...]:
    return (*SPACES[kind], (64, 64), "tanh", 0.0, None, "minatar")


def same_net(cls: Any, args: tuple[Any, ...], dev: str, seed: int = 0) -> Any:
    """``cls(*args)`` on ``dev``, loaded from the state_dict of one seeded CPU instance."""
    torch.manual_seed(seed)
    ref, net = cls(*args), cls(*args)
    net.load_state_dict(ref.state_dict())
    return net.to(dev)


def inputs(kind: str, n: int, dev: str) -> dict[str, torch.Tensor]:
    """A fixed batch from a seeded NumPy RNG: observations, actions (float, as RolloutBuffer stores them),
    advantages correlated with (s, a) so that g and F⁻¹g are far from noise, log π_old offsets, returns."""
    rng = np.random.default_rng(0)
    obs_space, act_space = SPACES[kind]
    obs = rng.integers(0, 2, (n, *obs_space.shape)).astype(np.uint8) if kind == "minatar" else \
        rng.normal(size=(n, *obs_space.shape)).astype(np.float32)
    act = rng.integers(0, act_space.n, n) if isinstance(act_space, gym.spaces.Discrete) else rng.normal(size=(n, 1))
    adv = np.sign(obs.reshape(n, -1)[:, 0] - 0.5) * (act.reshape(n, -1)[:, 0] - act.mean()) + rng.normal(size=n)
    out = {"obs": obs, "act": act.astype(np.float32), "adv": adv.astype(np.float32),
           "noise": (0.3 * rng.normal(size=n)).astype(np.float32), "ret": rng.normal(size=n).astype(np.float32)}
    return {k: torch.as_tensor(v, device=dev) for k, v in out.items()}


def natural_step(kind: str, dev: str, damping: float = 0.1) -> dict[str, Any]:
    """NPG.step_problem's Δθ = β (F + λI)⁻¹g, then TRPO.take_step's line search (δ 0.01)."""
    x = inputs(kind, 2048, dev)
    algo = TRPO.__new__(TRPO)   # only what the policy step reads: its config, and the policy with θ bound flat
    algo.cfg, algo.policy = TRPOConfig(cg_damping=damping), same_net(ActorCritic, ac_args(kind), dev)
    algo.bind_actor()
    adv = (x["adv"] - x["adv"].mean()) / (x["adv"].std() + 1e-8)
    problem, diag = NPG.step_problem(algo, x["obs"], x["act"], adv)   # type: ignore[arg-type]
    out = TRPO.take_step(algo, problem)                                # type: ignore[arg-type]
    return {"step": problem.full_step, "kl": problem.evaluate()[1], **out, **diag}


def check_natural(kind: str, dev: str) -> tuple[bool, dict[str, Any]]:
    a, b = natural_step(kind, "cpu"), natural_step(kind, dev)
    nums = {**cmp(a["step"], b["step"]), "kl_dev": b["kl"], "delta": TRPOConfig.target_kl,
            **{f"{k}_{d}": x[k] for k in ("step_accepted", "line_search_steps", "cg_residual", "grad_norm")
               for d, x in (("cpu", a), ("dev", b))}}
    if kind == "discrete":   # information: CartPole-v1's λ = 1e-3, where float32 CG itself is only good to ~3 %
        c = cmp(natural_step(kind, "cpu", 1e-3)["step"], natural_step(kind, dev, 1e-3)["step"])
        nums.update(damping_1e3_cos=c["cos"], damping_1e3_rel=c["rel"])
    return (nums["cos"] >= 0.999 and nums["rel"] <= 1e-3 and b["step_accepted"] == 1
            and b["kl"] <= TRPOConfig.target_kl), nums


def ppo_loss(kind: str, dev: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One PPO minibatch loss as PPO.learn computes it (clip 0.2, vf_coef 0.5, ent_coef 0.01), and its gradient."""
    pi, x = same_net(ActorCritic, ac_args(kind), dev), inputs(kind, 256, dev)
    with torch.no_grad():
        logp_old = pi.dist(x["obs"]).log_prob(x["act"]) + x["noise"]   # ρ spread around 1: the clip acts
    dist, v = pi(x["obs"])
    log_ratio = dist.log_prob(x["act"]) - logp_old
    a = (x["adv"] - x["adv"].mean()) / (x["adv"].std() + 1e-8)
    loss = (-clipped_surrogate(log_ratio.exp(), a, 0.2).mean() + 0.5 * (x["ret"] - v).pow(2).mean()
            - 0.01 * dist.entropy().mean())
    return loss.detach(), flat_grad(loss, list(pi.parameters()))


def check_ppo(kind: str, dev: str) -> tuple[bool, dict[str, Any]]:
    (la, ga), nums = ppo_loss(kind, "cpu"), {}
    if kind == "minatar" and dev == "cuda":   # cuDNN convolutions run in TF32 by default: reported; checked in fp32
        lb, gb = ppo_loss(kind, dev)
        nums = {"tf32_loss_rel": cmp(la, lb)["rel"], "tf32_grad_rel": cmp(ga, gb)["rel"],
                "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
    tf32, torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.allow_tf32, False   # the legacy flag: any torch 2.x
    try:
        lb, gb = ppo_loss(kind, dev)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    nums.update(loss_cpu=float(la), loss_rel=cmp(la, lb)["rel"], grad_rel=cmp(ga, gb)["rel"])
    return nums["loss_rel"] <= 1e-4 and nums["grad_rel"] <= 1e-4, nums


def check_retrace_tr(dev: str) -> tuple[bool, dict[str, Any]]:
    rng = np.random.default_rng(0)
    T, N, A, delta = 20, 16, 6, 1.0
    r, q, nv = rng.normal(size=(3, T, N))
    c, term = rng.uniform(0, 1, (T, N)), rng.random((T, N)) < 0.1
    end = term | (rng.random((T, N)) < 0.1)
    g, k = rng.normal(size=(2, T * N, A))
    out = {}
    for d in ("cpu", dev):
        t = [torch.as_tensor(v, dtype=torch.float32, device=d) for v in (r, q, nv, c, term, end, g, k)]
        out[d] = (retrace(*t[:6], 0.99), *trust_region(t[6], t[7], delta), t[7])
    (qa, za, ca, _), (qb, zb, cb, kb) = out["cpu"], out[dev]
    kz = float((kb * zb).sum(-1).max())
    nums = {"retrace_max_abs": cmp(qa, qb)["max_abs"], "z_max_abs": cmp(za, zb)["max_abs"],
            "coef_max_abs": cmp(ca, cb)["max_abs"], "max_kz_dev": kz, "delta": delta, "active": int((cb > 0).sum())}
    return max(nums["retrace_max_abs"], nums["z_max_abs"], nums["coef_max_abs"]) <= 1e-5 and kz <= delta + 1e-5, nums


def acer_batch(kind: str, dev: str) -> Trajectory:
    """A seeded (T = 20, B = 4) batch with a terminal and a time-limit truncation."""
    rng = np.random.default_rng(1)
    T, B, D, o = 20, 4, 1, SPACES[kind][0].shape[0]
    term, end = np.zeros((T, B), bool), np.zeros((T, B), bool)
    term[7, 0] = end[7, 0] = end[12, 1] = True
    if kind == "discrete":
        acts, stats = rng.integers(0, 2, (T, B)), {"log_probs": np.log(rng.dirichlet(np.ones(2), (T, B)))}
    else:
        acts = rng.normal(size=(T, B, D))
        stats = {"mean": 0.5 * rng.normal(size=(T, B, D)), "log_std": -0.5 + 0.2 * rng.normal(size=(T, B, D))}
    b = Trajectory.from_numpy(rng.normal(size=(T + 1, B, o)).astype(np.float32), acts, rng.normal(size=(T, B)),
                              term, end, stats, (np.array([12]), np.array([1]), rng.normal(size=(1, o))))
    f = lambda x: x.to(dev, torch.float32) if x.is_floating_point() else x.to(dev)  # noqa: E731
    return Trajectory(**{k: ({s: f(t) for s, t in v.items()} if isinstance(v, dict) else f(v))
                         for k, v in vars(b).items()})


def acer_terms(kind: str, dev: str) -> dict[str, Any]:
    """One ACER update's terms (δ 0.1) with θ and a different θ_avg, so that the trust region acts."""
    net, avg = (same_net(DiscreteACERNet if kind == "discrete" else SDNet, (*SPACES[kind], (64, 64), "tanh"), dev, s)
                for s in (0, 1))
    torch.manual_seed(123)   # the continuous terms sample a'_t and the SDN's u_i
    out = (discrete_terms if kind == "discrete" else continuous_terms)(net, avg, acer_batch(kind, dev),
                                                                      ACERConfig(delta=0.1))
    return {**out, "grad": flat_grad(out["loss"], list(net.parameters()))}


def check_acer_terms(kind: str, dev: str) -> tuple[bool, dict[str, Any]]:
    a, b = acer_terms(kind, "cpu"), acer_terms(kind, dev)
    nums = {"max_kz_dev": float((b["k"] * b["z"]).sum(-1).max()), "delta": 0.1,
            "tr_active_dev": float((b["k"] * b["g"]).sum(-1).gt(0.1).float().mean())}
    # continuous: a'_t and u_i are drawn, so Q̃, Q^opc, z and the loss follow the device's RNG stream
    keys = ("q_ret", "z", "k", "loss", "grad") if kind == "discrete" else ("k", "rho", "V")
    for key in keys:
        c = cmp(a[key], b[key])
        nums[f"{key}_rel"], nums[f"{key}_max_abs"] = c["rel"], c["max_abs"]
    return (nums["max_kz_dev"] <= 0.1 + 1e-5 and all(nums[f"{k}_rel"] <= 1e-4 for k in keys)
            and (kind != "discrete" or nums["q_ret_max_abs"] <= 1e-5)), nums


def check_helpers(dev: str) -> tuple[bool, dict[str, Any]]:
    """The helpers a run on ``dev`` goes through, each tried once with the policy / tensors on ``dev``."""
    from algorithms.core.fast import NumpyActor
    from algorithms.core.gae import gae
    obs, z = np.zeros((3, 4), np.float32), torch.zeros(5, 2, device=dev)
    pi, pic = same_net(ActorCritic, ac_args("discrete"), dev), same_net(ActorCritic, ac_args("continuous"), dev)
    tries: dict[str, Callable[[], Any]] = {
        "Categorical.sample": lambda: Categorical(torch.zeros(3, 2, device=dev)).sample(),
        "DiagGaussian.sample": lambda: DiagGaussian(torch.zeros(3, 1, device=dev), torch.zeros(1, device=dev)).sample(),
        "ActorCritic.predict": lambda: pi.predict(obs), "ActorCritic.sample": lambda: pi.sample(obs),
        "ActorCritic.sample(continuous)": lambda: pic.sample(obs[:, :3]),
        "NumpyActor": lambda: NumpyActor.of(pi, 0).sample(obs), "gae": lambda: gae(z, z, z, z, z, 0.99, 0.95)}
    nums: dict[str, Any] = {}
    for name, fn in tries.items():
        try:
            fn()
            nums[name] = "ok"
        except Exception as e:  # noqa: BLE001 - recorded: that is the point
            nums[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    return all(v == "ok" for v in nums.values()), nums


def train(algo: str, env: str, steps: int, sets: dict[str, Any], dev: str, out: Path, keep: bool,
          catalog: Any) -> tuple[dict[str, Any], set[str]]:
    """One run through the runner; ``keep``: save one checkpoint mid-run and keep a copy of it
    (the runner deletes its own at the end). Returns the summary and the devices of the parameters."""
    from experiments.runner import RunContext, execute
    devices: set[str] = set()
    log, save = RunContext.log_update, RunContext.save_checkpoint

    def log_update(self: RunContext, *a: Any, **k: Any) -> None:
        sb3_policy = getattr(getattr(self.algo, "model", None), "policy", None)   # the SB3 references
        for m in [*vars(self.algo).values(), sb3_policy]:
            if isinstance(m, torch.nn.Module):
                devices.update(str(p.device) for p in m.parameters())
        log(self, *a, **k)

    def save_once(self: RunContext) -> None:
        if not (self.out / "checkpoint.kept.pt").exists():
            save(self)
            shutil.copyfile(self.checkpoint_path, self.out / "checkpoint.kept.pt")

    shutil.rmtree(out, ignore_errors=True)
    RunContext.log_update, RunContext.save_checkpoint = log_update, save_once   # type: ignore[method-assign]
    try:
        s = execute(algo, env, 0, steps, out, sets, dev, catalog, progress_bar=False,
                    checkpoint_secs=0 if keep else 1e9, eval_episodes=1, eval_freq=10**9)
    finally:
        RunContext.log_update, RunContext.save_checkpoint = log, save    # type: ignore[method-assign]
    return s, devices


def progress_problems(path: Path) -> list[str]:
    rows, bad = list(csv.DictReader(path.open())), []
    for col in rows[0] if rows else []:
        try:
            v = np.array([float(r[col] or "nan") for r in rows])
        except ValueError:
            continue   # a non-numeric column
        if np.isinf(v).any() or (col not in NAN_OK and np.isnan(v).any()):
            bad.append(f"{col}: {int((~np.isfinite(v)).sum())} of {len(v)} non-finite")
    return bad or ([] if rows else ["no rows"])


def check_kfac_conv(dev: str) -> tuple[bool, dict[str, Any]]:
    """K-FAC factors and natural step of a conv + linear net on the device against the same on CPU
    (fixed actions, so both back-propagate the same Σ log π)."""
    from algorithms.core.kfac import KFACFisher
    torch.manual_seed(0)
    x, act = torch.rand(64, 4, 10, 10), torch.randint(0, 6, (64,))
    ref = torch.nn.Sequential(torch.nn.Conv2d(4, 16, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(1024, 6))
    nets = {"cpu": ref, dev: copy.deepcopy(ref).to(dev)}
    out = {}
    for d, net in nets.items():
        k = KFACFisher(net, damping=0.01)
        xd, ad = x.to(d), act.to(d)
        k.record(lambda net=net, xd=xd, ad=ad: torch.distributions.Categorical(logits=net(xd)).log_prob(ad).sum())
        g = {m: (torch.ones_like(m.weight), torch.ones_like(m.bias)) for m in k.layers}
        nat = k.natural_gradient(g)
        out[d] = [t.detach().cpu() for m in k.layers for t in (k.A[m], k.G[m], *nat[m])]
    err = max(float((a - b).abs().max() / (b.abs().max() + 1e-12)) for a, b in zip(out[dev], out["cpu"]))
    return err < 1e-3, {"max_rel_err": err}


def check_j_stream(dev: str, root: Path, catalog: Any) -> tuple[bool, dict[str, Any]]:
    """Claim C3's second stream on the device: training with it equals training without it (its sampled
    evaluation forks the CUDA RNG) and the stream itself is reproducible."""
    from experiments.runner import execute
    sets = {"n_envs": 2, "n_steps": 256, "batch_size": 128}
    kw = dict(device=dev, catalog=catalog, progress_bar=False, checkpoint_secs=1e9)
    rows = {}
    for name, j in (("plain", None), ("plain2", None), ("j", (512, 4)), ("j2", (512, 4))):
        out = root / "j_stream" / name
        shutil.rmtree(out, ignore_errors=True)
        execute("trpo", "CartPole-v1", 0, 4096, out, sets, j_eval=j, **kw)
        timeless = lambda f: [{k: v for k, v in r.items() if k not in ("wall_s", "train_s")}   # noqa: E731
                              for r in csv.DictReader(open(f))]
        rows[name] = (timeless(out / "progress.csv"), timeless(out / "j_eval.csv") if j else None)
    reproducible = rows["plain"][0] == rows["plain2"][0]
    checks = {"training_unchanged_by_the_stream": rows["j"][0] == rows["plain"][0] or not reproducible,
              "stream_reproducible": rows["j"][1] == rows["j2"][1]}
    return all(checks.values()), {**checks, "plain_runs_reproducible": reproducible}


def check_run(algo: str, env: str, steps: int, sets: dict[str, Any], dev: str, root: Path,
              catalog: Any) -> tuple[bool, dict[str, Any]]:
    from experiments.io import read_checked
    out = root / "runs" / f"{algo}_{env.replace('/', '_')}"
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    s, devices = train(algo, env, steps, sets, dev, out, True, catalog)
    ckpt, saved_from, loaded = out / "checkpoint.kept.pt", set(), "none written"
    if ckpt.exists():   # once on CPU as asked; once more to read where each storage was saved from
        try:
            data = read_checked(ckpt)   # the runner's checkpoint: torch.save bytes + a sha256 trailer
            torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
            torch.load(io.BytesIO(data), map_location=lambda st, loc: saved_from.add(loc) or st, weights_only=False)
            loaded = "ok"
        except Exception as e:  # noqa: BLE001
            loaded = f"{type(e).__name__}: {e}"
        ckpt.unlink()
    checks = {"status_ok": s["status"] == "ok", "summary_device": s.get("device") == dev,
              "progress_finite": not (bad := progress_problems(out / "progress.csv")),
              "checkpoint_loads_on_cpu": loaded in ("ok", "none written"),
              "params_on_device": bool(devices) and all(d.split(":")[0] == dev for d in devices)}
    return all(checks.values()), {
        **checks, "steps_per_second": s["steps_per_second"], "error": s.get("error"), "param_devices": sorted(devices),
        "checkpoint": loaded, "checkpoint_saved_from": sorted(saved_from), "progress_problems": bad,
        "cuda_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if dev == "cuda" else None}


def check_timing(algo: str, steps: int, sets: dict[str, Any], dev: str, root: Path, catalog: Any) -> tuple[None, dict]:
    nums: dict[str, Any] = {"steps": steps}
    for d in dict.fromkeys((dev, "cpu")):
        s, devices = train(algo, "MinAtar/Breakout-v0", steps, sets, d, root / "timing" / f"{algo}_{d}", False, catalog)
        nums[f"steps_per_second_{d}"], nums[f"param_devices_{d}"] = s["steps_per_second"], sorted(devices)
    return None, nums


def write(out: Path, head: dict[str, Any], records: list[dict[str, Any]]) -> None:
    failed = [r for r in records if r["passed"] is False]
    (out / "cuda_check.json").write_text(json.dumps({**head, "passed": not failed, "records": records}, indent=1,
                                                    default=str))
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [f"# CUDA check: {f'{len(failed)} FAILED' if failed else 'passed'}", "", *(f"- {k}: {v}" for k, v in
             head.items()), "", "| check | kind | passed | s | numbers |", "|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['kind']} | {'info' if r['passed'] is None else r['passed']} | {r['seconds']} | "
              + "; ".join(f"{k}={fmt(v)}" for k, v in r["numbers"].items()).replace("|", "/") + " |" for r in records]
    for r in failed:
        lines += ["", f"## {r['name']}: failed", "", "```", r.get("traceback") or json.dumps(r["numbers"], indent=1,
                                                                                            default=str), "```"]
    (out / "cuda_check.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.cuda_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--scale", type=float, default=1.0, help="multiply every run's steps (default 1)")
    p.add_argument("--only", default="", help="run only the checks whose name contains this")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)   # as the runner does; small CPU problems also run ~60x slower on a loaded machine
    dev, t0, records = a.device, time.perf_counter(), []
    cuda = torch.cuda.is_available()
    head: dict[str, Any] = {
        "device": dev, "torch": torch.__version__, "torch_cuda": torch.version.cuda, "cuda_available": cuda,
        "device_name": torch.cuda.get_device_name(0) if cuda else None,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "python": sys.version.split()[0], "cpu_count": os.cpu_count(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(" ".join(f"{k}={v}" for k, v in head.items()), flush=True)
    if dev == "cuda" and not cuda:
        records.append({"name": "cuda_available", "kind": "setup", "passed": False, "seconds": 0, "numbers": {},
                        "traceback": "torch.cuda.is_available() is False; run with --device cpu to test on CPU"})
        write(a.out, head, records)
        print("error: CUDA is not available to this torch (torch.cuda.is_available() is False); "
              "use --device cpu to run the check on CPU", file=sys.stderr)
        return 2
    if dev == "cuda":   # the CUDA context, cuBLAS and cuDNN start before anything is timed
        x = torch.randn(8, 4, 10, 10, device=dev)
        (torch.nn.Conv2d(4, 4, 3).to(dev)(x).sum() + (x.flatten(1) @ x.flatten(1).T).sum()).item()
    from experiments.envs import load_catalog
    cat, n = load_catalog(), lambda steps: max(1, int(steps * a.scale))
    checks: list[tuple[str, str, Callable[[], tuple[bool | None, dict[str, Any]]]]] = [
        *((f"natural_step_{k}", "agreement", partial(check_natural, k, dev)) for k in ("discrete", "continuous")),
        *((f"ppo_loss_grad_{k}", "agreement", partial(check_ppo, k, dev)) for k in ("discrete", "continuous",
                                                                                     "minatar")),
        ("acer_retrace_trust_region", "agreement", partial(check_retrace_tr, dev)),
        *((f"acer_terms_{k}", "agreement", partial(check_acer_terms, k, dev)) for k in ("discrete", "continuous")),
        ("device_helpers", "device", partial(check_helpers, dev)),
        ("kfac_conv", "agreement", partial(check_kfac_conv, dev)),
        ("j_stream", "run", partial(check_j_stream, dev, a.out, cat)),
        *((f"run_{al}_{e}", "run", partial(check_run, al, e, n(st), ov, dev, a.out, cat)) for al, e, st, ov in RUNS),
        *((f"timing_{al}_minatar", "timing", partial(check_timing, al, n(st), ov, dev, a.out, cat)) for al, st, ov in
          (("ppo", 16384, {}), ("acer", 9600, {"replay_start": 1280})))]
    for name, kind, fn in [c for c in checks if a.only in c[0]]:
        t = time.perf_counter()
        try:
            passed, numbers = fn()
            rec: dict[str, Any] = {"name": name, "kind": kind, "passed": passed, "numbers": numbers}
        except Exception:  # noqa: BLE001 - every check runs; the traceback is its result
            rec = {"name": name, "kind": kind, "passed": False, "numbers": {}, "traceback": traceback.format_exc(-8)}
        rec["seconds"], head["wall_s"] = round(time.perf_counter() - t, 1), round(time.perf_counter() - t0, 1)
        records.append(rec)
        write(a.out, head, records)
        verdict = "info" if rec["passed"] is None else "ok" if rec["passed"] else "FAIL"
        print(f"[{head['wall_s']:6.1f}s] {name}: {verdict} {json.dumps(rec['numbers'], default=str)[:600]}", flush=True)
        print(rec.get("traceback", ""), end="", flush=True)
    failed = [r["name"] for r in records if r["passed"] is False]
    print(f"{len(records) - len(failed)} of {len(records)} checks without failure in {head.get('wall_s')} s; "
          f"failed: {failed or 'none'}; see {a.out / 'cuda_check.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
