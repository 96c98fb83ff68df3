"""A throw-away one-node SLURM on this machine (for the opt-in `slurm` tests).

    python tests/slurm_local.py start [--dir DIR]    # munged (if not running), slurmctld, slurmd
    python tests/slurm_local.py status [--dir DIR]
    python tests/slurm_local.py stop [--dir DIR]     # stops exactly the daemons `start` started

or, from Python::

    with LocalSlurm("/tmp/ngrl-slurm") as slurm:
        subprocess.run(["sbatch", "--wait", "--wrap", "hostname"], env=slurm.env(), check=True)

Needs root and Debian's ``slurm-wlm`` and ``munge`` packages (``apt-get install -y slurm-wlm
munge``). The config is written to DIR/slurm.conf *and* to /etc/slurm/slurm.conf: the job
steps that the Snakemake SLURM executor launches with ``srun`` inside a job read the
default path and do not see a ``SLURM_CONF`` variable. A pre-existing /etc/slurm/slurm.conf is
saved to DIR and put back by ``stop``. State, spool, logs and pid files live in DIR; the
daemons listen on loopback only. There is no accounting database, so the Snakemake executor
must be run with ``--slurm-status-command squeue --slurm-no-account``.

Only daemons recorded in DIR/started.json (those this module started) are ever signalled,
by the pid in their pid file, after checking that the pid still runs that program.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_DIR = Path(os.environ.get("NGRL_SLURM_DIR", "/tmp/ngrl-slurm"))
ETC_CONF = Path("/etc/slurm/slurm.conf")
MUNGE_RUN = Path("/run/munge")
MUNGE_PID = MUNGE_RUN / "munged.pid"
DAEMONS = ("slurmctld", "slurmd")
PACKAGES = ("slurm-wlm", "munge")
INSTALL_HINT = "apt-get update && apt-get install -y " + " ".join(PACKAGES)
MARKER = "# written by ngrl tests/slurm_local.py"


class SlurmError(RuntimeError):
    pass


def missing_programs() -> list[str]:
    return [p for p in ("munged", "munge", "unmunge", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue")
            if shutil.which(p) is None]


def install_packages() -> None:
    """apt-get the Debian packages if any program is missing (root only)."""
    if not missing_programs():
        return
    if os.geteuid() != 0:
        raise SlurmError(f"missing {missing_programs()} and not root: {INSTALL_HINT}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
        if r.returncode != 0:
            raise SlurmError(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    if missing_programs():
        raise SlurmError(f"still missing after install: {missing_programs()}")


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise SlurmError("no MemTotal in /proc/meminfo")


def _pid_alive(pid: int, program: str) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z" and Path(cmd).name == program


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def owner_of_etc_conf() -> Path | None:
    """The scratch dir of the helper session that wrote /etc/slurm/slurm.conf, if one did."""
    try:
        first = ETC_CONF.read_text().splitlines()[0]
    except (FileNotFoundError, IndexError):
        return None
    if first.startswith(MARKER + " (") and first.endswith(")"):
        return Path(first[len(MARKER) + 2:-1])
    return None


class LocalSlurm:
    """Start/stop a one-node SLURM whose files all live in ``root``."""

    def __init__(self, root: str | Path = DEFAULT_DIR, ctld_port: int = 16817, slurmd_port: int = 16818,
                 cpus: int | None = None, mem_mb: int | None = None, install: bool = False):
        self.root = Path(root).resolve()
        self.host = socket.gethostname().split(".")[0]
        self.ctld_port, self.slurmd_port = ctld_port, slurmd_port
        self.cpus = cpus or os.cpu_count() or 1
        self.mem_mb = mem_mb or max(1000, int(_mem_mb() * 0.9))   # slurmd drains a node that has less
        self.install = install
        self.conf = self.root / "slurm.conf"
        self.state_file = self.root / "started.json"
        self.reused = False   # start() found this dir's daemons already running

    # -- files ----------------------------------------------------------------------------
    def pidfile(self, daemon: str) -> Path:
        return MUNGE_PID if daemon == "munged" else self.root / f"{daemon}.pid"

    def conf_text(self) -> str:
        r = self.root
        return "\n".join([
            MARKER + f" ({r})",
            "ClusterName=ngrl-local",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"StateSaveLocation={r}/state",
            f"SlurmdSpoolDir={r}/spool",
            f"SlurmctldLogFile={r}/slurmctld.log",
            f"SlurmdLogFile={r}/slurmd.log",
            f"SlurmctldPidFile={self.pidfile('slurmctld')}",
            f"SlurmdPidFile={self.pidfile('slurmd')}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "ReturnToService=2",
            # squeue is the only job-status source without accounting: finished jobs must stay
            # visible long enough (the executor falls back to sacct below 3 × its first check delay).
            "MinJobAge=300",
            "MailProg=/bin/true",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb}",
            "PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ])

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {"started": [], "etc_backup": None}

    def _save_state(self, st: dict) -> None:
        self.state_file.write_text(json.dumps(st, indent=1))

    # -- start ----------------------------------------------------------------------------
    def running(self) -> list[str]:
        st = self._state()
        return [d for d in st["started"] if (p := _read_pid(self.pidfile(d))) and _pid_alive(p, d)]

    def start(self, timeout: float = 90) -> LocalSlurm:
        if os.geteuid() != 0:
            raise SlurmError("a local SLURM needs root (SlurmUser=root, /etc/slurm, /run/munge)")
        if self.install:
            install_packages()
        if missing_programs():
            raise SlurmError(f"missing programs {missing_programs()}: {INSTALL_HINT}")
        alive = self.running()
        if set(DAEMONS) <= set(alive):   # already up from an earlier `start` of this dir: reuse
            self.reused = True
            self.wait_idle(timeout)
            return self
        if alive:
            self.stop()
        other = owner_of_etc_conf()
        if other is not None and other != self.root:
            # left over by an interrupted earlier session of this helper: stop what it recorded
            LocalSlurm(other).stop()
        for d in ("state", "spool"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        st = {"started": [], "etc_backup": None}
        self.conf.write_text(self.conf_text())
        if ETC_CONF.exists() and not ETC_CONF.read_text().startswith(MARKER):
            backup = self.root / "etc-slurm.conf.orig"
            shutil.copy2(ETC_CONF, backup)
            st["etc_backup"] = str(backup)
        ETC_CONF.parent.mkdir(parents=True, exist_ok=True)
        ETC_CONF.write_text(self.conf_text())
        self._save_state(st)
        try:
            if not self._munge_ok():
                self._start_munged()
                st["started"].append("munged")
                self._save_state(st)
            for d in DAEMONS:
                self.pidfile(d).unlink(missing_ok=True)
                r = subprocess.run([d, "-f", str(self.conf)], env=self.env(), capture_output=True, text=True,
                                   timeout=60)
                if r.returncode != 0:
                    raise SlurmError(f"{d} exited {r.returncode}: {r.stderr[-2000:]}{self._log_tail(d)}")
                st["started"].append(d)
                self._save_state(st)
                self._wait_pid(d, 20)
            self.wait_idle(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _munge_ok(self) -> bool:
        try:
            enc = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
            if enc.returncode != 0:
                return False
            dec = subprocess.run(["unmunge"], input=enc.stdout, capture_output=True, timeout=10)
            return dec.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    def _start_munged(self) -> None:
        # munged refuses to run as root with the packaged key (owned by munge): run it as `munge`.
        MUNGE_RUN.mkdir(parents=True, exist_ok=True)
        shutil.chown(MUNGE_RUN, "munge", "munge")
        MUNGE_RUN.chmod(0o755)
        MUNGE_PID.unlink(missing_ok=True)
        r = subprocess.run(["runuser", "-u", "munge", "--", "munged"], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            raise SlurmError(f"munged failed: {r.stderr[-2000:]}")
        self._wait_pid("munged", 10)
        deadline = time.monotonic() + 10
        while not self._munge_ok():
            if time.monotonic() > deadline:
                raise SlurmError("munged runs but `munge -n | unmunge` fails")
            time.sleep(0.2)

    def _wait_pid(self, daemon: str, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = _read_pid(self.pidfile(daemon))
            if p and _pid_alive(p, daemon):
                return p
            time.sleep(0.2)
        raise SlurmError(f"{daemon} did not come up (no live pid in {self.pidfile(daemon)})"
                         + self._log_tail(daemon))

    def _log_tail(self, daemon: str) -> str:
        log = self.root / f"{daemon}.log"
        return f"\n--- {log} ---\n" + "\n".join(log.read_text().splitlines()[-30:]) if log.exists() else ""

    def node_state(self) -> str:
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=self.env(), capture_output=True, text=True,
                           timeout=20)
        return r.stdout.strip() if r.returncode == 0 else f"error: {r.stderr.strip()}"

    def wait_idle(self, timeout: float = 90) -> None:
        deadline, state = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            state = self.node_state()
            if state == "idle":
                return
            time.sleep(1)
        raise SlurmError(f"node not idle after {timeout}s (sinfo: {state!r})"
                         f"{self._log_tail('slurmctld')}{self._log_tail('slurmd')}")

    # -- stop -----------------------------------------------------------------------------
    def stop(self, timeout: float = 20) -> None:
        """Stop the daemons recorded as started here (newest first); restore /etc/slurm/slurm.conf."""
        st = self._state()
        for d in reversed(st["started"]):
            pid = _read_pid(self.pidfile(d))
            if pid is None or not _pid_alive(pid, d):
                continue
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _pid_alive(pid, d) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _pid_alive(pid, d):
                os.kill(pid, signal.SIGKILL)
        if ETC_CONF.exists() and ETC_CONF.read_text().startswith(MARKER + f" ({self.root})"):
            if st.get("etc_backup") and Path(st["etc_backup"]).exists():
                shutil.copy2(st["etc_backup"], ETC_CONF)
            else:
                ETC_CONF.unlink()
        self._save_state({"started": [], "etc_backup": None})

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc) -> None:
        if not self.reused:
            self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--dir", default=str(DEFAULT_DIR))
    p.add_argument("--install", action="store_true", help="apt-get install slurm-wlm munge if missing")
    a = p.parse_args(argv)
    s = LocalSlurm(a.dir, install=a.install)
    try:
        if a.action == "start":
            s.start()
            print(f"SLURM up: node {s.host} idle; export SLURM_CONF={s.conf}")
        elif a.action == "stop":
            s.stop()
            print("stopped")
        else:
            print(f"running (started here): {s.running() or 'none'}; sinfo: {s.node_state()}")
    except SlurmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
