"""Run a command and record it in the DAG's time accounting: ``{RESULTS}/timing/steps_time.jsonl``.

    python -m experiments.timed TIMING_DIR RULE [--kind toy] -- COMMAND ...

For jobs that are neither runs (which write their own ``process_s``) nor analysis steps (which
analysis/smk_step.py times): the seed's toy experiments. Exits with the command's status; the record is
written whatever that is, counting from this process's start.
"""
from __future__ import annotations

import subprocess
import sys
import time


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("usage: python -m experiments.timed TIMING_DIR RULE [--kind KIND] -- COMMAND ...", file=sys.stderr)
        return 2
    i = argv.index("--")
    head, cmd = argv[:i], argv[i + 1:]
    kind = "toy"
    if "--kind" in head:
        j = head.index("--kind")
        kind = head[j + 1]
        head = head[:j] + head[j + 2:]
    if len(head) != 2 or not cmd:
        print("usage: python -m experiments.timed TIMING_DIR RULE [--kind KIND] -- COMMAND ...", file=sys.stderr)
        return 2
    from experiments.io import append_step_time, process_started

    started = process_started()
    rc = subprocess.call(cmd)
    append_step_time(head[0], head[1], started, time.time(), kind)
    return rc


if __name__ == "__main__":
    sys.exit(main())
