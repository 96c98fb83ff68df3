"""Command line for one run.

    python -m experiments.run --algo ppo --env CartPole-v1 --seed 0 --steps 100000 --out runs/x \
        [--set key=value ...] [--device auto|cpu|cuda] [--checkpoint-secs S]

An env id gymnasium registers but envs.yaml lacks runs with its family's defaults (said once
on stderr; summary.json records ``catalogued: false``). A run killed at any point resumes from
its checkpoint when the same command is started again. With ``NGRL_RUN_SERVER=SOCKET`` a run server
that has the imports done makes the run (experiments/run_server.py; the DAG starts one).
"""
from __future__ import annotations

import argparse
import os
import sys

# One thread per job for NumPy's BLAS too, as for torch: OpenBLAS reads these when NumPy loads it, so they are
# set before anything imports NumPy (the DAG's rules set the same); it would otherwise spread ACER's NumPy
# products over every core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def parse_sets(items: list[str]) -> dict[str, str]:
    from algorithms.base import ConfigError

    out = {}
    for it in items:
        if "=" not in it:
            raise ConfigError(f"--set expects key=value, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", required=True)
    p.add_argument("--env", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--eval-episodes", type=int, default=None, help="override the env's episodes per evaluation")
    p.add_argument("--eval-freq", type=int, default=None, help="override the env's env steps between evaluations")
    p.add_argument("--eval-policy", default="deterministic", choices=["deterministic", "stochastic"],
                   help="evaluate the policy's mode (default) or actions sampled from it (claim C3)")
    p.add_argument("--j-eval-freq", type=int, default=None, metavar="B",
                   help="also estimate J(π) of the sampled policy after the update crossing each multiple of B env "
                   "steps, into j_eval.csv (claim C3's true objective; a second stream beside eval.csv)")
    p.add_argument("--j-eval-episodes", type=int, default=None, help="episodes per J(π) estimate (default 32)")
    p.add_argument("--checkpoint-secs", type=float, default=float(os.environ.get("NGRL_CHECKPOINT_SECS", 60)),
                   help="save a resumable checkpoint at most this often (0: after every update; default: "
                   "$NGRL_CHECKPOINT_SECS, else 60), keeping the one before as checkpoint.prev.pt")
    a = p.parse_args(argv)
    if a.j_eval_episodes is not None and a.j_eval_freq is None:
        p.error("--j-eval-episodes needs --j-eval-freq")
    from algorithms.base import ConfigError
    from experiments.envs import load_catalog, uncatalogued_note
    from experiments.runner import execute
    try:
        catalog = load_catalog()
        if a.env not in catalog.envs:
            print(uncatalogued_note(catalog.get(a.env, infer=True)), file=sys.stderr)
        s = execute(a.algo, a.env, a.seed, a.steps, a.out, parse_sets(a.sets), a.device, progress_bar=not a.no_progress,
                    checkpoint_secs=a.checkpoint_secs, eval_episodes=a.eval_episodes, catalog=catalog,
                    eval_freq=a.eval_freq, eval_policy=a.eval_policy,
                    j_eval=(a.j_eval_freq, a.j_eval_episodes or 32) if a.j_eval_freq is not None else None)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{a.algo} {a.env} seed {a.seed}: status={s['status']} final_eval_return={s['final_eval_return']} "
          f"steps/s={s['steps_per_second']}")
    return 0


if __name__ == "__main__":
    # under a DAG, a run server (experiments/run_server.py) that has the imports done makes the run;
    # where none answers, this process makes it
    _rc = None
    if os.environ.get("NGRL_RUN_SERVER"):
        from experiments.run_server import delegate

        _rc = delegate(sys.argv[1:], os.environ["NGRL_RUN_SERVER"])
    sys.exit(main() if _rc is None else _rc)
