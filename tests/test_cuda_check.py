"""The CUDA path's prepared device check (``experiments/cuda_check.py``, run on a GPU machine; its
last report is ``results/device/cuda_check.md``) keeps working here on the CPU, and the pieces it
relies on move between devices without changing a number."""
import json

import numpy as np
import torch

from algorithms.core.gae import gae
from algorithms.core.replay import Trajectory
from experiments import cuda_check


def test_agreement_checks_pass_on_the_cpu(tmp_path):
    for only in ("natural_step", "ppo_loss", "acer_", "device_helpers", "kfac_conv", "j_stream"):
        assert cuda_check.main(["--device", "cpu", "--out", str(tmp_path / only), "--only", only]) == 0
        report = json.loads((tmp_path / only / "cuda_check.json").read_text())
        assert report["passed"] and report["records"], only


def test_gae_returns_on_the_values_device_and_equals_the_direct_sum():
    g = torch.Generator().manual_seed(0)
    T, N = 6, 2
    r, v, nv = (torch.randn(T, N, generator=g) for _ in range(3))
    term = torch.zeros(T, N)
    term[3, 0] = 1.0
    A, R = gae(r, v, nv, term, term.clone(), 0.9, 0.8)
    assert A.device == v.device and torch.allclose(R, A + v)
    want = np.zeros((T, N))
    for t in range(T):
        for i in range(N):
            acc, w = 0.0, 1.0
            for s in range(t, T):
                acc += w * (r[s, i] + 0.9 * (1 - term[s, i]) * nv[s, i] - v[s, i]).item()
                if term[s, i]:
                    break
                w *= 0.9 * 0.8
            want[t, i] = acc
    np.testing.assert_allclose(A.numpy(), want, rtol=1e-5, atol=1e-6)


def test_trajectory_to_its_own_device_is_itself_and_a_copy_elsewhere_keeps_every_field():
    tr = Trajectory(obs=torch.randn(3, 2, 4), actions=torch.zeros(2, 2, dtype=torch.long),
                    rewards=torch.randn(2, 2), terminated=torch.zeros(2, 2), episode_end=torch.zeros(2, 2),
                    stats={"log_probs": torch.randn(2, 2, 3)},
                    final_t=torch.zeros(0, dtype=torch.long), final_b=torch.zeros(0, dtype=torch.long),
                    final_obs=torch.zeros(0, 4))
    assert tr.to(torch.device("cpu")) is tr
    if torch.cuda.is_available():
        moved = tr.to(torch.device("cuda"))
        assert moved.obs.is_cuda and moved.stats["log_probs"].is_cuda
        assert torch.equal(moved.rewards.cpu(), tr.rewards)


def test_explicit_path_check_passes_on_the_cpu(capsys):
    """experiments/cuda_check_explicit.py, the light device check of core/explicit.py: on a machine without
    CUDA it compares the CPU with itself and every explicit quantity with its autograd/torch oracle."""
    import json

    from experiments import cuda_check_explicit

    assert cuda_check_explicit.main() == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] and out["discrete_cpu"]["ppo_explicit_vs_autograd"] < 1e-5
