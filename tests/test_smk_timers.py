"""experiments/smk_timers.py: Snakemake's scheduler keeps one pending re-evaluation timer.

Oracle: the scheduler's own contract (a wake-up of ``_open_jobs`` after ``delay``) against the
thread count: without the patch every call starts a timer thread (snakemake/snakemake#2967)."""
from __future__ import annotations

import threading

from snakemake.scheduling import job_scheduler as js

from experiments import smk_timers


class _Fake:
    def __init__(self):
        self._open_jobs = threading.Semaphore(0)


def test_the_installed_snakemake_is_patched():
    assert smk_timers.PATCHED
    assert js.JobScheduler._schedule_reevalutation is smk_timers._reevaluate_once


def test_many_rounds_leave_one_daemon_timer_that_still_wakes_the_scheduler():
    s, before = _Fake(), threading.active_count()
    for _ in range(50):
        js.JobScheduler._schedule_reevalutation(s, 0.2)
    assert threading.active_count() - before == 1
    assert s._ngrl_reevaluation.daemon
    assert s._open_jobs.acquire(timeout=5)            # the wake-up comes
    assert not s._open_jobs.acquire(timeout=0.4)       # once, not 50 times
    js.JobScheduler._schedule_reevalutation(s, 0.05)   # a fired timer is replaced by the next round's
    assert s._open_jobs.acquire(timeout=5)

