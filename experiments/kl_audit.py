"""Audit of the KL that NPG/TRPO log against an independent recomputation.

For every policy update of a run, with the hyper-parameters resolved exactly as the runner
resolves them (``experiments.runner.resolve_hyperparams``) and the runner's own env
construction (``RunContext.make_env``; evaluation and checkpoints switched off), it saves the
actor's parameters θ_old before the step and θ after it, and recomputes on that update's
policy batch {s_t}

    true KL = (1/N) Σ_t KL(π_{θ_old}(·|s_t) ‖ π_θ(·|s_t))

in float64 with ``torch.distributions`` (Normal / Categorical and their registered KL), not
with ``algorithms.core.distributions``. It compares that with ``kl``, the value the algorithm
logs in ``progress.csv``, and with δ = ``target_kl``.

    python -m experiments.kl_audit --algo trpo --env Pendulum-v1 --steps 100000 --seed 0

prints one line: updates, accepted, #accepted with true KL > δ, max true KL / δ over the
accepted updates, and the mean of logged / true KL over the accepted updates.
"""
from __future__ import annotations

import argparse
import copy
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from experiments.envs import load_catalog
from experiments.runner import RunContext, resolve_hyperparams, seed_everything

State = dict[str, torch.Tensor]


def actor_state(policy: torch.nn.Module) -> State:
    """A copy of every parameter and buffer of the policy (θ, log σ included)."""
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}


def _torch_dist(net: torch.nn.Module, obs: torch.Tensor) -> torch.distributions.Distribution:
    """π(·|s) of an MLP ``ActorCritic`` (vector observations) from its modules, as a
    torch.distributions object: Categorical(logits) or Normal(μ, σ) per action dimension."""
    features = net.pi_trunk(obs.double())
    phi = net.pi.linear(features)
    if net.pi.discrete:
        return Categorical(logits=phi)
    return Normal(phi, net.pi.log_std.exp().expand_as(phi))


@torch.no_grad()
def true_mean_kl(template: torch.nn.Module, before: State, after: State, obs: torch.Tensor) -> float:
    """(1/N) Σ_t KL(π_before(·|s_t) ‖ π_after(·|s_t)) in float64, from saved parameters."""
    p_net, q_net = copy.deepcopy(template).double(), copy.deepcopy(template).double()
    p_net.load_state_dict(before)
    q_net.load_state_dict(after)
    p, q = _torch_dist(p_net, obs), _torch_dist(q_net, obs)
    kl = kl_divergence(p, q)
    if isinstance(p, Normal):
        kl = kl.sum(-1)
    return float(kl.mean())


@dataclass
class UpdateRecord:
    step: int
    accepted: bool
    logged_kl: float
    true_kl: float
    max_kl: float


class AuditRun(RunContext):
    """The runner's context without evaluation or checkpoints."""

    def evaluate(self, step: int) -> None:
        self.next_eval = math.inf

    def save_checkpoint(self) -> None:
        pass


@dataclass
class Audit:
    algo: str
    env_id: str
    steps: int
    seed: int
    records: list[UpdateRecord] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        acc = [r for r in self.records if r.accepted]
        delta = self.records[0].max_kl if self.records else float("nan")
        ratios = [r.logged_kl / r.true_kl for r in acc if r.true_kl > 0]
        return {"updates": len(self.records), "accepted": len(acc),
                "accepted_above_delta": sum(r.true_kl > r.max_kl for r in acc),
                "max_true_over_delta": max((r.true_kl / delta for r in acc), default=float("nan")),
                "mean_logged_over_true": float(np.mean(ratios)) if ratios else float("nan")}

    def line(self) -> str:
        s = self.summary()
        return (f"{self.algo} {self.env_id} steps={self.steps} seed={self.seed}: updates={s['updates']} "
                f"accepted={s['accepted']} accepted_true_kl>δ={s['accepted_above_delta']} "
                f"max_true_kl/δ={s['max_true_over_delta']:.4f} mean_logged/true={s['mean_logged_over_true']:.4f}")


def audit(algo: str, env_id: str, steps: int, seed: int, overrides: dict[str, Any] | None = None,
          out: Path | str = "/tmp/kl_audit") -> Audit:
    """Train ``algo`` (npg or trpo) for ``steps`` env steps and record every update."""
    spec = load_catalog().get(env_id)
    cls, cfg = resolve_hyperparams(algo, spec, overrides or {})
    torch.set_num_threads(1)
    seed_everything(seed)
    run = AuditRun(algo, spec, seed, steps, Path(out), progress_bar=False, checkpoint_secs=math.inf)
    result = Audit(algo, env_id, steps, seed)
    agent = cls(cfg, run)
    run.algo = agent
    template = copy.deepcopy(agent.policy)
    pending: dict[str, Any] = {}
    step_problem, take_step = agent.step_problem, agent.take_step

    def recording_step_problem(obs: torch.Tensor, act: torch.Tensor, adv: torch.Tensor):
        pending.update(obs=obs.clone(), before=actor_state(agent.policy))
        return step_problem(obs, act, adv)

    def recording_take_step(problem):
        out_ = take_step(problem)
        pending.update(after=actor_state(agent.policy), accepted=bool(out_["step_accepted"]))
        return out_

    agent.step_problem, agent.take_step = recording_step_problem, recording_take_step
    log_update = run.log_update

    def recording_log_update(step: int, diagnostics, episode_returns=None) -> None:
        true = true_mean_kl(template, pending["before"], pending["after"], pending["obs"])
        result.records.append(UpdateRecord(int(step), pending["accepted"], float(diagnostics["kl"]), true,
                                           float(diagnostics["max_kl"])))
        pending.clear()
        log_update(step, diagnostics, episode_returns)

    run.log_update = recording_log_update
    try:
        agent.learn()
    finally:
        run.close()
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algo", default="trpo", choices=["trpo", "npg"])
    ap.add_argument("--env", default="Pendulum-v1")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", type=Path, help="write one row per update here")
    args = ap.parse_args(argv)
    res = audit(args.algo, args.env, args.steps, args.seed)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, ["step", "accepted", "logged_kl", "true_kl", "max_kl"])
            w.writeheader()
            w.writerows(vars(r) for r in res.records)
    print(res.line())


if __name__ == "__main__":
    main()
