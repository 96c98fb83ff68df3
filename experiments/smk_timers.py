"""One pending re-evaluation timer in Snakemake's scheduler, not one per scheduling round.

Snakemake (≥ 8.17, its default ``--max-jobs-per-timespan 100/1s``) ends every scheduling round that has
ready jobs by starting a ``threading.Timer`` that wakes the scheduler one second later
(``JobScheduler._schedule_reevalutation``). Every wake-up is a round, so every timer begets the next,
and every finished job adds a chain: after k jobs the scheduler runs ~k rounds a second, each
re-evaluating the params and resources of every ready job. Upstream: snakemake/snakemake#2967 (threads
and CPU growing over a run). Measured on this DAG (2 cores, 293 runs): 154 scheduler threads after
81 runs, Snakemake at 12 % of a core, a median 0.8 s from one run's end to the next run's start.

The re-evaluation exists so that jobs held back by the rate limit are started when the window has
passed; one pending timer does that as well as a hundred. This keeps at most one, as a daemon thread
(so that Snakemake does not wait for it at exit). Imported by the Snakefile; where Snakemake's
scheduler has no such method, nothing is changed (``PATCHED`` is False).
"""
from __future__ import annotations

import threading

try:
    from snakemake.scheduling import job_scheduler as _js
except ImportError:   # pragma: no cover - another Snakemake layout
    _js = None

PATCHED = False


def _reevaluate_once(self, delay: float) -> None:
    pending = getattr(self, "_ngrl_reevaluation", None)
    if pending is not None and pending.is_alive():
        return
    t = threading.Timer(delay, self._open_jobs.release)
    t.daemon = True
    self._ngrl_reevaluation = t
    t.start()


if _js is not None and callable(getattr(getattr(_js, "JobScheduler", None), "_schedule_reevalutation", None)):
    _js.JobScheduler._schedule_reevalutation = _reevaluate_once
    PATCHED = True
