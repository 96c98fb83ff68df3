"""Atomic file writes (temp file in the same directory, fsync, rename) and checksummed files.

A checksummed file is ``payload + trailer``; the fixed-length trailer is
``b"\\nngrl-sha256 " + hex(sha256(payload)) + b" " + f"{len(payload):016d}" + b"\\n"``. A reader
trusts the payload only when the trailer is present, its length field equals the payload's
length and its digest equals the payload's sha256: a truncated, extended or bit-flipped file
fails one of the three. Zip readers find their central directory from the end and tolerate
trailing bytes, so a checksummed ``torch.save`` file still opens with ``torch.load``.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Buffer = bytes | bytearray | memoryview
TRAILER_MAGIC = b"\nngrl-sha256 "
TRAILER_LEN = len(TRAILER_MAGIC) + 64 + 1 + 16 + 1


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path | str, data: Buffer | Sequence[Buffer], previous: Path | str | None = None) -> None:
    """Write ``data`` (one buffer or several, concatenated) to ``path`` atomically.

    With ``previous``, an existing ``path`` is renamed to ``previous`` just before the new file
    takes its place, so at every instant each of the two names holds a complete file or none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    chunks = [data] if isinstance(data, bytes | bytearray | memoryview) else list(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for c in chunks:
                f.write(c)
            f.flush()
            os.fsync(f.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temps(directory: Path | str, names: Sequence[str]) -> list[Path]:
    """Delete the temp files a killed writer left behind for ``names`` in ``directory``."""
    gone = []
    for name in names:
        for p in Path(directory).glob(f".{name}.*.tmp"):
            p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def checksum_trailer(payload: Buffer) -> bytes:
    """The trailer of ``payload``: magic, sha256 hex digest, payload length (16 digits)."""
    n = memoryview(payload).nbytes
    return TRAILER_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b" " + f"{n:016d}".encode() + b"\n"


def write_checked_atomic(path: Path | str, payload: Buffer, previous: Path | str | None = None) -> None:
    """``payload`` + its checksum trailer, written atomically (see ``write_bytes_atomic``)."""
    write_bytes_atomic(path, [payload, checksum_trailer(payload)], previous=previous)


class ChecksumError(ValueError):
    """A checksummed file fails its check (trailer, length or sha256): proven damaged."""


def _damage(data: bytes) -> str | None:
    """``None`` if ``data`` (payload + trailer) is intact, else why not (one short phrase)."""
    size = len(data)
    if size < TRAILER_LEN:
        return f"{size} bytes, shorter than its checksum trailer"
    trailer = data[size - TRAILER_LEN:]
    if not trailer.startswith(TRAILER_MAGIC) or not trailer.endswith(b"\n"):
        return "no checksum trailer: truncated or not written by this version"
    digest, _, length = trailer[len(TRAILER_MAGIC):-1].partition(b" ")
    if not length.isdigit() or int(length) != size - TRAILER_LEN:
        return f"length {size - TRAILER_LEN} differs from the recorded {length.decode(errors='replace')}"
    if hashlib.sha256(memoryview(data)[:size - TRAILER_LEN]).hexdigest().encode() != digest:
        return "sha256 mismatch"
    return None


def read_checked(path: Path | str) -> bytes:
    """The whole of ``path`` (payload + trailer), read once, after checking its trailer: the
    bytes a caller then parses are the bytes that were verified. Returned unsliced (slicing
    would copy a multi-GB replay memory); zip readers (``torch.load``) ignore the trailer.

    Raises ``ChecksumError`` when the check fails (the file is damaged), and lets ``OSError``
    through: a file that cannot be read is not proven damaged."""
    data = Path(path).read_bytes()
    reason = _damage(data)
    if reason is not None:
        raise ChecksumError(reason)
    return data


def write_text_atomic(path: Path | str, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: Path | str, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_csv_atomic(path: Path | str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), restval="", extrasaction="raise", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    write_text_atomic(path, buf.getvalue())


def append_step_time(timing_dir: Path | str, rule: str, started: float, ended: float, kind: str = "analysis",
                     cores: int | None = None) -> None:
    """One line of ``{RESULTS}/timing/steps_time.jsonl`` for the DAG's time accounting
    (analysis/dag_time.py): a job that is not a run (an analysis step, a toy experiment) and when it ran;
    ``cores``: the invocation's ``--cores``, where the step knows it (``dag_time``), so that a later redraw
    with other cores still accounts this sitting with its own. A single short O_APPEND write, so
    concurrent jobs do not interleave."""
    d = Path(timing_dir)
    d.mkdir(parents=True, exist_ok=True)
    rec = {"rule": rule, "kind": kind, "started": round(started, 3), "ended": round(ended, 3)}
    if cores:
        rec["cores"] = int(cores)
    line = json.dumps(rec) + "\n"
    with open(d / "steps_time.jsonl", "a") as f:
        f.write(line)


_PROCESS_START: float | None = None


def set_process_start(unix_time: float) -> None:
    """Count this process's age from ``unix_time``: a run forked by the run server
    (experiments/run_server.py) counts its start-up from its client's start."""
    global _PROCESS_START
    _PROCESS_START = unix_time


def process_age() -> float | None:
    """Seconds since this process started (Linux: /proc/self/stat's start time against /proc/uptime);
    None where that cannot be read. The runs and the analysis steps record it for the DAG's time
    accounting (analysis/dag_time.py)."""
    if _PROCESS_START is not None:
        return max(0.0, time.time() - _PROCESS_START)
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])   # field 22, starttime
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def process_started() -> float:
    """Unix time this process started (``process_age`` back from now; now where that is unknown): the
    start a timed job records, and the one a run server's client hands to the run it forks."""
    return time.time() - (process_age() or 0.0)
