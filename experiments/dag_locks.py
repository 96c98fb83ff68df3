"""Stale Snakemake locks after a hard kill, recognised and removed so the same command resumes.

Snakemake locks its working directory (``.snakemake/locks/*.lock``) while it runs and removes
the locks on exit. ``kill -9``, a reboot or a lost head node leave them behind, and the next
``snakemake`` stops with "Directory cannot be locked" until the user runs ``--unlock``.
Snakemake cannot tell a stale lock from a live one; this module can, for this workflow: every
main ``snakemake`` process that parses the Snakefile records itself as
``.snakemake/ngrl-owners/<host>.<pid>`` and deletes the record on exit. Locks are stale, and
are removed, when records exist and every one names a process of *this* host that is gone.
A record from another host (a shared file system) or a live process leaves the locks alone;
so does a lock with no record (a snakemake that predates this module).
"""
from __future__ import annotations

import atexit
import os
import socket
import time
from pathlib import Path

OWNERS = Path(".snakemake") / "ngrl-owners"
LOCKS = Path(".snakemake") / "locks"


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live snakemake process (a reused pid of another program is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return b"snakemake" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True          # no /proc: trust the pid


def clear_stale_locks(workdir: Path | str) -> list[Path]:
    """Delete the lock files of ``workdir`` if every recorded owner is a dead process of this
    host (and those records). Returns the lock files deleted."""
    workdir = Path(workdir)
    records = sorted((workdir / OWNERS).glob("*")) if (workdir / OWNERS).is_dir() else []
    host = socket.gethostname()
    for r in records:
        rec_host, _, pid = r.name.rpartition(".")
        if rec_host != host or not pid.isdigit() or _alive(int(pid)):
            return []
    for r in records:
        r.unlink(missing_ok=True)
    locks = sorted((workdir / LOCKS).glob("*.lock")) if records else []
    for lock in locks:
        lock.unlink(missing_ok=True)
    return locks


def register_owner(workdir: Path | str) -> Path:
    """Record this process as a snakemake of ``workdir``; the record goes at normal exit."""
    rec = Path(workdir).resolve() / OWNERS / f"{socket.gethostname()}.{os.getpid()}"
    rec.parent.mkdir(parents=True, exist_ok=True)
    rec.touch()
    atexit.register(rec.unlink, missing_ok=True)
    return rec


def claim_workdir(workdir: Path | str) -> list[Path]:
    """``clear_stale_locks`` then ``register_owner``: what the Snakefile calls at parse time in
    the main snakemake process. Returns the stale lock files removed."""
    removed = clear_stale_locks(workdir)
    register_owner(workdir)
    return removed


def sync_manifest(path: Path | str, entries: list[str], outputs: list[Path | str]) -> bool:
    """Keep ``path`` (a DAG input of the tables built from ``entries``) such that Snakemake redraws the
    tables — and so trains what is missing first — exactly when a run is new or missing; return
    whether it was rewritten.

    Snakemake (9.x) does not rerun a job whose outputs exist when one of its inputs is missing,
    even if another rule can make that input, and it ignores an input whose mtime changed but
    whose content did not: adding an algorithm to the matrix, or deleting a run to retrain it,
    would leave "Nothing to be done". So the file lists the matrix's runs and is rewritten
    (i) when that list changes, and (ii) on every invocation that finds runs missing, with the
    missing ones and the time (new content each time). When every run is there and the list is
    unchanged it is left alone, so a finished DAG stays up to date."""
    path = Path(path)
    head = "\n".join(sorted(entries)) + "\n"
    missing = [str(Path(o).parent) for o in outputs if not Path(o).exists()]
    old = path.read_text(encoding="utf-8") if path.exists() else None
    if old is not None and not missing and old.split("# missing", 1)[0] == head:
        return False
    text = head
    if missing:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        text += f"# missing when the DAG last found runs missing ({stamp}, {time.time_ns()} ns, pid {os.getpid()}):\n"
        text += "\n".join(sorted(missing)) + "\n"
    if text == old:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True
