"""Body of every analysis rule (``script:`` directive of workflow/rules/analysis.smk).

Snakemake runs it in a fresh Python process with a ``snakemake`` object (input, output,
params, rule) — unlike a ``run:`` block, it does not parse the Snakefile again, so a step
costs only its own imports.
"""

import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parent))  # noqa: F821  (the repository root)

from analysis.pipeline import run_step  # noqa: E402
from experiments.io import append_step_time, process_started  # noqa: E402

# stdout/stderr of the step (warnings included) go to the rule's log: file
with open(snakemake.log[0], "w") as _log, contextlib.redirect_stdout(_log), contextlib.redirect_stderr(_log):  # noqa: F821
    run_step(snakemake.rule, snakemake)  # noqa: F821
# the step's start (its process's) and end, appended to the history the DAG's time accounting reads
# (analysis/dag_time.py), in {RESULTS}/timing/ (committed with a snapshot, unlike logs/; every analysis
# rule logs to {RESULTS}/logs/analysis/)
append_step_time(Path(snakemake.log[0]).resolve().parents[2] / "timing", snakemake.rule,  # noqa: F821
                 process_started(), time.time(), cores=getattr(snakemake.params, "cores", None))  # noqa: F821
