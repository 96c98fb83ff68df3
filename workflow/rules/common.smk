# Helper functions of the Snakefile's rules and the cluster resources of one run; included by
# the Snakefile after RUNS, RESULTS and CATALOG are defined (functions live here, not beside the
# rules: `snakemake --lint`).
import math
import sys
from pathlib import Path

# The interpreter that runs the jobs, passed to the shell commands as a param. A Path, not a
# str: Snakemake records only builtin-typed params for its params rerun trigger, so finished
# runs are not rerun because the same code was started from another virtual environment.
PYTHON = Path(sys.executable)


# The runs of this invocation are forked by a run server that has imported torch, gymnasium, MuJoCo and
# SB3 once (experiments/run_server.py; ≈ 2 s per run otherwise). Jobs find it through the environment
# they inherit, not through their shell command or params, so it triggers no rerun; with a cluster
# executor none is started (a run belongs in its job's allocation), and a job that cannot reach one
# makes its run in its own process. `run_server: false` turns it off.
def _start_run_server(log):
    import os
    import tempfile
    import time

    from experiments import run_server

    if not config.get("run_server", True) or not workflow.local_exec:   # a cluster job runs in its allocation
        return
    path = str(Path(tempfile.gettempdir()) / f"ngrl-run-{os.getpid()}.sock")
    try:
        run_server.start(path, str(PYTHON))
    except OSError as e:   # no server: every run imports in its own process, as without one
        print(f"run server not started ({e}); runs start their own processes", file=sys.stderr)
        return
    for _ in range(100):   # the socket is bound before the imports, within ≈ 0.1 s
        if os.path.exists(path):
            break
        time.sleep(0.05)
    os.environ[run_server.ENV_VAR] = path


def _stop_run_server(log):
    import os

    from experiments import run_server

    if os.environ.get(run_server.ENV_VAR):
        run_server.stop(os.environ.pop(run_server.ENV_VAR))


onstart:
    _start_run_server(log)


onsuccess:
    _stop_run_server(log)


onerror:
    _stop_run_server(log)


def run_dir(wc):
    return f"{RESULTS}/runs/{wc.algo}/{wc.env}/{wc.seed}"


def run_of(wc):
    return RUNS[run_dir(wc)]


def run_set_args(wc):
    sets = config.get("set", {}).get(wc.algo, {})
    return " ".join(f"--set {k}={v if not isinstance(v, list) else ','.join(map(str, v))}" for k, v in sets.items())


# ---- cluster job resources of one run (rules `train` and `sweep_run`) -----------------------
# Per env family: `rate`, env steps/s of one run on one core with its evaluations, set low
# (measured on a loaded 2-core VM: classic 600-2500, Hopper-v5 1700-2200 for PPO/TRPO/ACER,
# Pong-v5 PPO 70 on CPU); `mem_mb`, peak memory (Atari: ACER's 400k-transition replay).
# runtime = 1.5 x steps / rate, in minutes, >= 10, x attempt, <= max_runtime: a run killed at
# its time limit is retried (profile `retries`) and resumes from its checkpoint.pt, so an
# Atari run longer than max_runtime needs several attempts (--retries N). The local executor ignores
# runtime and gpu; mem_mb limits local runs only with --resources mem_mb=N.
# Config `cluster: {FAMILY: {gpu, gpu_model, slurm_extra, mem_mb, runtime_factor, max_runtime}}` overrides
# per family, e.g. `cluster: {atari: {gpu: 1}}`; a run with gpu >= 1 gets `--device auto`.
FAMILY_RESOURCES = {
    "classic": {"rate": 300, "mem_mb": 2000},
    "mujoco": {"rate": 300, "mem_mb": 3000},
    "atari": {"rate": 40, "mem_mb": 16000},
    "minatar": {"rate": 300, "mem_mb": 3000},   # PPO 3 200, A2C 3 600, ACER 4 100 steps/s at 30k (loaded)
}
SLOWER = {"acer": 3}   # algorithm-name prefixes slower than their family's rate (replay)
MAX_RUNTIME = 2880     # minutes (48 h, a common partition limit): longer runs continue in retries
CLUSTER = config.get("cluster", {})
_unknown = set(CLUSTER) - set(FAMILY_RESOURCES)
if _unknown:
    raise ValueError(f"config `cluster`: unknown env families {sorted(_unknown)}; known: {sorted(FAMILY_RESOURCES)}")


CATALOG = load_catalog()


def job_resources(algo, env_id, steps):
    fam = CATALOG.get(env_id).family
    base, over = FAMILY_RESOURCES[fam], CLUSTER.get(fam, {})
    slow = next((f for prefix, f in SLOWER.items() if algo.startswith(prefix)), 1)
    minutes = 1.5 * steps * slow * over.get("runtime_factor", 1) / base["rate"] / 60
    return {"runtime": max(10, math.ceil(minutes)), "max_runtime": int(over.get("max_runtime", MAX_RUNTIME)),
            "mem_mb": int(over.get("mem_mb", base["mem_mb"])),
            # None leaves a resource unset (the Kubernetes executor treats any `gpu`, even 0, as a request)
            "gpu": int(over["gpu"]) if over.get("gpu") else None, "gpu_model": over.get("gpu_model"),
            "slurm_extra": over.get("slurm_extra")}


def run_resources(wc):
    r = run_of(wc)
    return job_resources(r.algo, r.env, r.steps)


def device_of(wc, resources):
    """`auto` (CUDA if visible, else CPU) for runs given a GPU; CPU otherwise (small nets)."""
    return "auto" if int(resources.get("gpu", 0) or 0) else "cpu"


def timing_dir(wc, output):
    """{RESULTS}/timing, where a toy rule (outputs in {RESULTS}/toys/) records its start and end
    (experiments/timed.py) for rule dag_time."""
    return str(Path(output[0]).parents[1] / "timing")


def invocation_cores(wc):
    """This invocation's --cores (0 where it has none, e.g. `snakemake --report`), for rule dag_time."""
    try:
        return int(workflow.cores)
    except Exception:   # snakemake's WorkflowError: no total number of cores defined
        return 0
