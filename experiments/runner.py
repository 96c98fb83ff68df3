"""One run: build the algorithm, train it, evaluate on schedule, write the contract files.

Contract, in the output directory:
  progress.csv  one row per policy update: step, wall_s, train_s, episode_return, episodes, diagnostics
  eval.csv      step, train_s, return_mean, return_std, n_episodes
  j_eval.csv    (with --j-eval-freq) the same columns: J(π) of the sampled policy every block (claim C3)
  summary.json  final_eval_return, total_steps, wall_s, train_s, eval_s, process_s, steps_per_second,
                status, resolved hyper-parameters, env id, seed, package versions, git commit
wall_s counts from the run's start; train_s is wall_s less the time spent evaluating (both
streams), the cost of learning itself; process_s counts from the process's start (start-up).
All are written atomically; summary.json last, so its presence means the run ended.

Checkpoints (``checkpoint.pt`` beside them, not a declared output of the DAG) hold the
algorithm's state, every env's exact state, the RNG states and the rows so far. Starting
the same command again after a kill resumes from the last one; on CPU the final CSVs equal
an uninterrupted run's. Each carries a sha256 trailer and the one before it is kept as
``checkpoint.prev.pt``: a damaged newest one (its checksum fails) is renamed
``*.damaged`` and the run falls back to the previous one; two damaged ones restart from step 0
— said in one line on stderr. A checkpoint that cannot be read (OSError) or that passes its
checksum but does not unpickle is not proven damaged: a ``ResumeError`` names it and keeps it.
"""
from __future__ import annotations

import dataclasses
import io
import math
import os
import platform
import random
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from algorithms.base import Algorithm, ConfigError, config_dict
from algorithms.core.envs import VecEnv
from experiments.envs import ROOT, EnvCatalog, EnvSpec, check_dependencies, env_fns, eval_protocol, load_catalog
from experiments.evaluation import Evaluator
from experiments.hyperparams import (  # noqa: F401  (re-exported: the runner's public API)
    HYPERPARAMS_YAML,
    Resolved,
    hyperparams_block,
    resolve_hyperparams,
    resolve_with_provenance,
)
from experiments.io import (
    ChecksumError,
    process_age,
    read_checked,
    remove_stale_temps,
    write_checked_atomic,
    write_csv_atomic,
    write_json_atomic,
)

EVAL_SEED_OFFSET = 1_000_003
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"
CHECKPOINT_FILES = ("checkpoint.pt", PREVIOUS_CHECKPOINT)
# Checkpoint format, part of a run's identity: replay memory holds raw observations since issue 12
# (normalised on sampling). A checkpoint of another format is refused with a clear message.
CHECKPOINT_FORMAT = 2
EVAL_COLUMNS = ["step", "train_s", "return_mean", "return_std", "n_episodes"]
PACKAGES = ("torch", "numpy", "gymnasium", "ale-py", "mujoco", "stable-baselines3", "sb3-contrib")


class Divergence(RuntimeError):
    """NaN or inf in a loss or in the parameters."""


class ResumeError(ConfigError):
    """A checkpoint that cannot be resumed from and is not proven damaged (unreadable, not
    loadable, another configuration or format): the file is kept and no summary is written."""


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def machine_info() -> dict[str, Any]:
    """Where a run ran: OS, CPU model, cores, torch threads (summary.json ``machine``)."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads()}


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class RunContext:
    """Implements ``algorithms.base.Run``: what an algorithm sees of the runner."""

    algo_name: str
    spec: EnvSpec
    seed: int
    total_steps: int
    out: Path
    device: torch.device = torch.device("cpu")
    progress_bar: bool = True
    checkpoint_secs: float = 60.0
    identity: dict[str, Any] = field(default_factory=dict)
    eval_policy: str = "deterministic"   # or "stochastic": actions sampled from π (claim C3)
    # a second evaluation stream beside the first: (block B, episodes) → J(π) of the *sampled* policy
    # after the update that crosses each multiple of B, in j_eval.csv (claim C3's true objective)
    j_eval: tuple[int, int] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    eval_rows: list[dict[str, Any]] = field(default_factory=list)
    j_rows: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env_id = self.spec.id
        self.t0 = time.perf_counter()
        self.eval_s = 0.0        # seconds spent in evaluations (both streams): wall_s − eval_s = train_s
        self.envs: list[VecEnv] = []
        self.algo: Algorithm | None = None
        self.evaluator = Evaluator(self.spec, self.spec.eval_episodes, EVAL_SEED_OFFSET + self.seed)
        self.next_eval = 0
        self.j_evaluator = (Evaluator(self.spec, self.j_eval[1], EVAL_SEED_OFFSET + self.seed)
                            if self.j_eval else None)
        self.next_j = 0
        self.last_checkpoint = time.perf_counter()
        self.columns: list[str] = ["step", "wall_s", "train_s", "episode_return", "episodes"]
        self._bar = None
        if self.progress_bar and sys.stderr.isatty():
            from tqdm import tqdm
            self._bar = tqdm(total=self.total_steps, unit="step", desc=f"{self.algo_name} {self.env_id} s{self.seed}")

    # --- the Run protocol -------------------------------------------------------------
    def make_env(self, n_envs: int, *, gamma: float = 0.99, norm_obs: bool = False,
                 norm_reward: bool = False) -> VecEnv:
        env_seed = int(np.random.SeedSequence([self.seed, len(self.envs)]).generate_state(1)[0] % 2**31)
        env = VecEnv(env_fns(self.spec, n_envs), seed=env_seed, norm_obs=norm_obs, norm_reward=norm_reward, gamma=gamma)
        self.envs.append(env)
        return env

    def env_fns(self, n_envs: int) -> list:
        return env_fns(self.spec, n_envs)

    def pop_episodes(self) -> list[float]:
        returns: list[float] = []
        for env in self.envs:
            returns += env.pop_episodes()[0]
        return returns

    def log_update(self, step: int, diagnostics: Mapping[str, float],
                   episode_returns: list[float] | None = None) -> None:
        rets = self.pop_episodes() if episode_returns is None else episode_returns
        wall = time.perf_counter() - self.t0   # one clock reading for both: train_s ≤ wall_s after rounding
        row: dict[str, Any] = {"step": int(step), "wall_s": round(wall, 3), "train_s": round(self.train_s(wall), 3),
                               "episode_return": float(np.mean(rets)) if rets else float("nan"), "episodes": len(rets)}
        for k, v in diagnostics.items():
            if k not in self.columns:
                self.columns.append(k)
            row[k] = float(v) if isinstance(v, int | float | np.floating | np.integer | bool) else v
        self.rows.append(row)
        bad = [k for k, v in diagnostics.items() if "loss" in k and isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise Divergence(f"non-finite {', '.join(bad)} at step {step}")
        self._check_parameters(step)
        due = step >= self.next_eval, bool(self.j_eval) and step >= self.next_j
        if due[0]:
            self.evaluate(step)
        if due[1]:
            self.evaluate_j(step)
        if any(due):
            self.flush()   # once, whichever streams evaluated
        if time.perf_counter() - self.last_checkpoint >= self.checkpoint_secs and step < self.total_steps:
            self.save_checkpoint()
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
            last_eval = self.eval_rows[-1]["return_mean"] if self.eval_rows else None
            self._bar.set_postfix(ret=row["episode_return"], eval=last_eval)

    # --- evaluation, divergence, output -----------------------------------------------
    def _check_parameters(self, step: int) -> None:
        """Raise ``Divergence`` naming the first non-finite parameter. Where the algorithm keeps its
        parameters in flat vectors (``parameter_vectors``), those are checked first, one call each, and
        the parameters one by one only to name the culprit."""
        vectors = self.algo.parameter_vectors() if self.algo is not None else None
        if vectors and all(np.isfinite(v.detach().numpy()).all() if v.device.type == "cpu"   # NumPy's SIMD: 10×
                           else bool(torch.isfinite(v).all()) for v in vectors):
            return
        named = [(f"{name}.{pname}", p) for name, mod in vars(self.algo or object()).items()
                 if isinstance(mod, torch.nn.Module) for pname, p in mod.named_parameters()]
        if not named:
            return
        finite = torch.stack([torch.isfinite(p).all() for _, p in named]).cpu()   # one device sync
        if not finite.all():
            name = named[int((~finite).nonzero()[0])][0]
            raise Divergence(f"non-finite parameter {name} at step {step}")

    def _play(self, evaluator: Evaluator, stochastic: bool, k: int) -> dict[str, Any]:
        """The k-th evaluation of a stream: the training time before it and its episodes' returns
        summarised; its own duration is added to ``eval_s``."""
        assert self.algo is not None
        t, train_s = time.perf_counter(), round(self.train_s(), 3)
        if stochastic:
            # sampled actions from a torch RNG seeded per evaluation; training's RNG state is restored,
            # so evaluating does not change what the algorithm draws next
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(EVAL_SEED_OFFSET + 7919 * self.seed + k)
                returns = evaluator(self.algo.predict_stochastic)
        else:
            returns = evaluator(self.algo.predict)
        self.eval_s += time.perf_counter() - t
        return {"train_s": train_s, "return_mean": float(returns.mean()), "return_std": float(returns.std()),
                "n_episodes": len(returns)}

    def train_s(self, wall: float | None = None) -> float:
        """Seconds of this run so far (or up to ``wall`` seconds of it) outside its evaluations: the cost
        of learning, comparable between runs whatever their evaluation streams (the x-axis of the
        report's wall-clock curves)."""
        return (time.perf_counter() - self.t0 if wall is None else wall) - self.eval_s

    def evaluate(self, step: int) -> None:
        self.eval_rows.append({"step": int(step), **self._play(self.evaluator, self.eval_policy == "stochastic",
                                                              len(self.eval_rows))})
        while self.next_eval <= step:
            self.next_eval += self.spec.eval_freq

    def evaluate_j(self, step: int) -> None:
        """Claim C3's stream: J(π) of the sampled policy, seeded exactly as a run whose only
        evaluation is ``--eval-policy stochastic`` with this block and episodes (the same numbers)."""
        assert self.j_eval is not None and self.j_evaluator is not None
        self.j_rows.append({"step": int(step), **self._play(self.j_evaluator, True, len(self.j_rows))})
        while self.next_j <= step:
            self.next_j += self.j_eval[0]

    # --- checkpoints --------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    @property
    def previous_checkpoint_path(self) -> Path:
        return self.out / PREVIOUS_CHECKPOINT

    def save_checkpoint(self) -> None:
        """``torch.save`` of the whole state + a sha256 trailer (``experiments.io``), written
        atomically; the checkpoint it replaces becomes ``checkpoint.prev.pt`` (one generation back)."""
        assert self.algo is not None
        state = {
            "identity": self.identity,
            "algo": self.algo.state_dict(),
            "envs": [e.state_dict(include_envs=True) for e in self.envs],
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                    **({"torch_cuda": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda"
                       else {})},
            "rows": self.rows, "eval_rows": self.eval_rows, "columns": self.columns, "next_eval": self.next_eval,
            "j_rows": self.j_rows, "next_j": self.next_j,
            "wall_s": time.perf_counter() - self.t0, "eval_s": self.eval_s,
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        write_checked_atomic(self.checkpoint_path, buf.getbuffer(), previous=self.previous_checkpoint_path)
        self.flush()
        self.last_checkpoint = time.perf_counter()

    def _load_verified(self, path: Path) -> tuple[dict[str, Any] | None, str | None]:
        """(state, None) if ``path`` passes its checksum and loads; (None, why) if the checksum
        proves it damaged. The bytes are read once and loaded from memory, so what is loaded is
        what was verified. An unreadable file, or a verified one that does not unpickle (other
        code or package versions wrote it), raises ``ResumeError`` and is left in place."""
        try:
            data = read_checked(path)
        except ChecksumError as e:
            return None, str(e)
        except OSError as e:
            raise ResumeError(f"cannot read {path} ({e.strerror or e}); it is kept, not proven damaged. Fix the "
                              "cause and start the same command again, or delete it to restart from step 0.") from e
        try:
            # onto the host: load_state_dict copies into the modules and optimisers wherever they
            # live, RNG states are host tensors, and a GPU checkpoint opens on a machine without one
            return torch.load(io.BytesIO(data), weights_only=False, map_location="cpu"), None
        except Exception as e:   # noqa: BLE001 - any unpickling error: intact bytes this code cannot load
            raise ResumeError(f"{path} passes its checksum but does not load ({type(e).__name__}: {e}); it is "
                              "kept. Other code or package versions (torch, numpy) probably wrote it: resume "
                              "with those, or delete it to restart from step 0.") from e

    def try_resume(self) -> str | None:
        """Resume from the newest intact checkpoint of this run: ``checkpoint.pt``, else
        ``checkpoint.prev.pt``. One whose checksum fails is renamed ``<name>.damaged`` (kept for
        inspection); if none is intact the run starts from step 0 (nothing has been loaded, so
        that start is the fresh run's). Temp files of a checkpoint write cut short by a kill are
        removed first. Returns one line saying what happened, ``None`` if there was nothing to
        resume from. ``ResumeError`` (file kept): unreadable, intact but not loadable, or of a
        different configuration or checkpoint format."""
        assert self.algo is not None
        remove_stale_temps(self.out, CHECKPOINT_FILES)
        damaged: list[str] = []
        for path in (self.checkpoint_path, self.previous_checkpoint_path):
            if not path.exists():
                continue
            state, reason = self._load_verified(path)
            if state is None:
                kept = path.with_name(path.name + ".damaged")
                path.replace(kept)
                damaged.append(f"{path.name} is damaged ({reason}), moved to {kept.name}")
                continue
            theirs, ours = state["identity"].get("format", 1), self.identity.get("format")
            if theirs != ours:
                raise ResumeError(f"{path} has checkpoint format {theirs}, this code reads format {ours}; refusing "
                                  "to resume from it. Delete it (restart from step 0) or use another --out.")
            if state["identity"] != self.identity:
                raise ResumeError(f"{path} belongs to a different configuration; refusing to resume "
                                  "from it. Delete it or use another --out.")
            self.algo.load_state_dict(state["algo"])
            for env, s in zip(self.envs, state["envs"], strict=True):
                env.load_state_dict(s)
            random.setstate(state["rng"]["python"])
            np.random.set_state(state["rng"]["numpy"])
            torch.set_rng_state(state["rng"]["torch"])
            if "torch_cuda" in state["rng"] and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["rng"]["torch_cuda"], self.device)
            self.rows, self.eval_rows = state["rows"], state["eval_rows"]
            self.columns, self.next_eval = state["columns"], state["next_eval"]
            self.j_rows, self.next_j = state.get("j_rows", []), state.get("next_j", 0)
            self.t0 = time.perf_counter() - state["wall_s"]
            self.eval_s = state.get("eval_s", 0.0)   # checkpoints older than train_s: none recorded
            if "train_s" not in self.columns:
                self.columns.insert(self.columns.index("wall_s") + 1, "train_s")
            if self._bar is not None and self.rows:
                self._bar.update(self.rows[-1]["step"])
            step = self.rows[-1]["step"] if self.rows else 0
            return "; ".join([*damaged, f"resumed from {path.name} at step {step}"])
        if damaged:
            return "; ".join([*damaged, "no intact checkpoint: restarting from step 0"])
        return None

    def flush(self) -> None:
        write_csv_atomic(self.out / "progress.csv", self.rows, self.columns)
        write_csv_atomic(self.out / "eval.csv", self.eval_rows, EVAL_COLUMNS)
        if self.j_eval:
            write_csv_atomic(self.out / "j_eval.csv", self.j_rows, EVAL_COLUMNS)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        for env in self.envs:
            env.close()
        self.evaluator.close()
        if self.j_evaluator is not None:
            self.j_evaluator.close()


def execute(algo: str, env_id: str, seed: int, steps: int, out: Path | str, overrides: Mapping[str, Any] | None = None,
            device: str = "cpu", catalog: EnvCatalog | None = None, progress_bar: bool = True,
            checkpoint_secs: float = 60.0, eval_episodes: int | None = None, eval_freq: int | None = None,
            eval_policy: str = "deterministic", j_eval: tuple[int, int] | None = None) -> dict[str, Any]:
    """Validate everything, then train. Returns the summary written to ``out/summary.json``."""
    out = Path(out)
    # ---- validation: nothing is written before all of it passes -----------------------
    if steps <= 0:
        raise ConfigError(f"--steps must be positive, got {steps}")
    catalog = catalog or load_catalog()
    spec = catalog.get(env_id, infer=True)   # an id envs.yaml lacks: its family's defaults
    if eval_episodes is not None:
        if eval_episodes <= 0:
            raise ConfigError(f"--eval-episodes must be positive, got {eval_episodes}")
        spec = dataclasses.replace(spec, eval_episodes=eval_episodes)
    if eval_freq is not None:
        if eval_freq <= 0:
            raise ConfigError(f"--eval-freq must be positive, got {eval_freq}")
        spec = dataclasses.replace(spec, eval_freq=eval_freq)
    if eval_policy not in ("deterministic", "stochastic"):
        raise ConfigError(f"--eval-policy must be deterministic or stochastic, got {eval_policy!r}")
    if j_eval is not None and (len(j_eval) != 2 or min(j_eval) <= 0):
        raise ConfigError(f"--j-eval-freq and --j-eval-episodes must be positive, got {j_eval}")
    check_dependencies(spec)
    resolved = resolve_with_provenance(algo, spec, overrides or {})
    cls, cfg = resolved.cls, resolved.config
    if (eval_policy == "stochastic" or j_eval) and cls.predict_stochastic is Algorithm.predict_stochastic:
        raise ConfigError(f"{algo} does not implement predict_stochastic: it cannot be evaluated with "
                          "--eval-policy stochastic or --j-eval-freq")
    probe = env_fns(spec, 1)[0]()
    cls.check_action_space(probe.action_space)
    probe.close()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    # "format": the checkpoint format (CHECKPOINT_FORMAT: replay memory holds raw observations since
    # issue 12); a checkpoint or finished run of another format is refused, not resumed.
    identity = {"algo": algo, "env_id": env_id, "seed": seed, "total_steps": steps, "format": CHECKPOINT_FORMAT,
                "hyperparams": config_dict(cfg),
                "eval": {"freq": spec.eval_freq, "episodes": spec.eval_episodes, **eval_protocol(spec),
                         # recorded only when not the default, so runs made before the option keep their identity
                         **({"policy": eval_policy} if eval_policy != "deterministic" else {})},
                # likewise only when asked for
                **({"j_eval": {"freq": int(j_eval[0]), "episodes": int(j_eval[1]), "policy": "stochastic"}}
                   if j_eval else {})}
    summary_path = out / "summary.json"
    if summary_path.exists():
        import json
        old = json.loads(summary_path.read_text())
        if {k: old.get(k) for k in identity} != identity:
            raise ConfigError(f"{out} holds a finished run of a different configuration; refusing to mix results. "
                              "Use another --out or delete that directory.")
        print(f"{out}: this run already finished (status {old.get('status')}); nothing to do.")
        return old

    # ---- training ---------------------------------------------------------------------
    torch.set_num_threads(1)
    seed_everything(seed)
    out.mkdir(parents=True, exist_ok=True)
    run = RunContext(algo, spec, seed, steps, out, dev, progress_bar, checkpoint_secs, identity, eval_policy,
                     tuple(j_eval) if j_eval else None)
    status, error, crash, trace = "ok", None, None, None
    try:
        run.algo = cls(cfg, run)
        resumed = run.try_resume()
        if resumed:
            print(f"{out}: {resumed}", file=sys.stderr)
        run.algo.learn()
        if not run.eval_rows or run.eval_rows[-1]["step"] < run.rows[-1]["step"]:
            run.evaluate(run.rows[-1]["step"] if run.rows else steps)
        if j_eval and (not run.j_rows or run.j_rows[-1]["step"] < run.rows[-1]["step"]):
            run.evaluate_j(run.rows[-1]["step"] if run.rows else steps)
    except ResumeError:
        raise   # the checkpoint is kept and no summary written: the same command tries again
    except Divergence as e:
        status, error = "failed", str(e)
    except Exception as e:   # a crash is recorded too (then re-raised): the DAG lists it, nothing is lost
        status, error, crash = "failed", f"{type(e).__name__}: {e}", e
        trace = traceback.format_exc(limit=8)
    finally:
        run.close()
    wall = time.perf_counter() - run.t0
    total = run.rows[-1]["step"] if run.rows else 0
    run.flush()
    summary = {
        **identity,
        "status": status,
        "error": error,
        "final_eval_return": run.eval_rows[-1]["return_mean"] if run.eval_rows else None,
        "steps_done": total,
        "wall_s": round(wall, 3),
        "train_s": round(wall - run.eval_s, 3),      # wall_s less the evaluations (both streams)
        "eval_s": round(run.eval_s, 3),
        # seconds from this process's start to here: process_s − wall_s is start-up (interpreter,
        # imports, env and network construction) and writing; the DAG's overhead accounting reads it
        "process_s": None if (age := process_age()) is None else round(age, 3),
        "steps_per_second": round(total / wall, 1) if wall > 0 else None,
        "family": spec.family,
        "catalogued": spec.catalogued,
        "hyperparams_provenance": resolved.provenance,   # not in `identity`: resume checks ignore it
        "device": str(dev),
        "versions": package_versions(),
        "machine": machine_info(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "finished_unix": round(time.time(), 3),
        "git_commit": git_commit(),
        "command": " ".join(sys.argv),
        "traceback": trace,
    }
    write_json_atomic(summary_path, summary)
    if crash is not None:
        raise crash
    run.checkpoint_path.unlink(missing_ok=True)
    run.previous_checkpoint_path.unlink(missing_ok=True)
    # a kill's leftovers
    remove_stale_temps(out, (*CHECKPOINT_FILES, "progress.csv", "eval.csv", "j_eval.csv", "summary.json"))
    return summary
