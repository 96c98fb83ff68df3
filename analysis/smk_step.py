"""Body of every analysis rule (``script:`` directive of workflow/rules/analysis.smk).

Snakemake runs it in a fresh Python process with a ``snakemake`` object (input, output,
params, rule) — unlike a ``run:`` block, it does not parse the Snakefile again, so a step
costs only its own imports.
"""

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parent))  # noqa: F821  (the repository root)

from analysis.pipeline import run_step  # noqa: E402

# stdout/stderr of the step (warnings included) go to the rule's log: file
with open(snakemake.log[0], "w") as _log, contextlib.redirect_stdout(_log), contextlib.redirect_stderr(_log):  # noqa: F821
    run_step(snakemake.rule, snakemake)  # noqa: F821
