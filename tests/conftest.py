import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def kill_and_resume(root):
    """``f(args, ref, killed, ready)``: run ``python -m experiments.run *args`` to the end into ``ref``;
    start it again into ``killed``, SIGKILL it once ``ready(killed)`` holds (mid-run, a checkpoint
    written), and start the same command again, which must resume from the checkpoint and finish."""
    import signal
    import subprocess
    import time

    def f(args, ref, killed, ready):
        cmd = [sys.executable, "-m", "experiments.run", *args, "--out"]
        r = subprocess.run([*cmd, str(ref)], cwd=root, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        p = subprocess.Popen([*cmd, str(killed)], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while time.time() < deadline and not ((killed / "checkpoint.pt").exists() and ready(killed)):
            time.sleep(0.02)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert not (killed / "summary.json").exists(), "the run finished before it could be killed"
        r = subprocess.run([*cmd, str(killed)], cwd=root, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0 and "resumed from checkpoint" in r.stderr, r.stderr

    return f
