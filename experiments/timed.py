"""Run a command and record it in the DAG's time accounting: ``{RESULTS}/timing/steps_time.jsonl``.

    python -m experiments.timed TIMING_DIR RULE [--kind toy] -- COMMAND ...

For jobs that are neither runs (which write their own ``process_s``) nor analysis steps (which
analysis/smk_step.py times): the seed's toy experiments. Exits with the command's status; the record is
written whatever that is, counting from this process's start.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    i = argv.index("--") if "--" in argv else len(argv)
    head, cmd = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="python -m experiments.timed", description=__doc__,
                                usage="%(prog)s TIMING_DIR RULE [--kind KIND] -- COMMAND ...",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("timing_dir")
    p.add_argument("rule")
    p.add_argument("--kind", default="toy", help="the job's part in the accounting (default: toy)")
    a = p.parse_args(head)
    if not cmd:
        p.error("no command after --")
    from experiments.io import append_step_time, process_started

    started = process_started()
    rc = subprocess.call(cmd)
    append_step_time(a.timing_dir, a.rule, started, time.time(), a.kind)
    return rc


if __name__ == "__main__":
    sys.exit(main())
