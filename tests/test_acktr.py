"""ACKTR (algorithms/acktr.py): what each update decides and logs, against independent recomputation."""
import csv

import numpy as np
import pytest
import torch

from algorithms.acktr import ACKTRConfig
from experiments.runner import execute

SMALL = {"n_envs": 4, "n_steps": 16}


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_every_step_is_scaled_into_the_kl_budget_of_its_quadratic_model(tmp_path, env):
    """½ η² gᵀF̂⁻¹g ≤ δ_KL/2 on every update: the step scale the code logs is min(1, √(δ_KL / (α² gᵀΔ)))."""
    s = execute("acktr", env, 0, 3000, tmp_path / "r", SMALL, progress_bar=False)
    assert s["status"] == "ok", s.get("error")
    rows = _rows(tmp_path / "r" / "progress.csv")
    clip = ACKTRConfig().kl_clip
    for r in rows:
        assert float(r["kl_model"]) <= 0.5 * clip * (1 + 1e-9)
        assert 0 < float(r["step_scale"]) <= 1
        assert np.isfinite(float(r["kl"])) and float(r["kl"]) >= 0
    assert any(float(r["step_scale"]) < 1 for r in rows)          # the trust region binds somewhere


def test_same_seed_same_numbers_and_the_factors_resume(tmp_path):
    outs = []
    for name in ("a", "b"):
        execute("acktr", "Pendulum-v1", 3, 1024, tmp_path / name, SMALL, progress_bar=False)
        outs.append([{k: v for k, v in r.items() if k != "wall_s"} for r in _rows(tmp_path / name / "progress.csv")])
    assert outs[0] == outs[1]


def _last_direction(monkeypatch, tmp_path, env, steps, sets):
    """Train briefly; return the summary, the algorithm and the last update's (g, Δ) with the
    parameter index, as ``ACKTR.natural_direction`` saw and returned them."""
    from algorithms.acktr import ACKTR

    captured = {}
    orig = ACKTR.natural_direction

    def spy(self, grads):
        out = orig(self, grads)
        captured.update(grads=grads, out=out, algo=self)
        return out
    monkeypatch.setattr(ACKTR, "natural_direction", spy)
    s = execute("acktr", env, 0, steps, tmp_path / "r", sets, progress_bar=False)
    algo = captured["algo"]
    return s, algo, captured["grads"], captured["out"], {id(p): i for i, p in enumerate(algo.params)}


def _kfac_step(algo, grads, idx, m):
    """The K-FAC step of layer m from the same gradients, computed directly."""
    return algo.kfac.natural_gradient({l: (grads[idx[id(l.weight)]], grads[idx[id(l.bias)]])
                                       for l in algo.kfac.layers})[m]


def test_natural_direction_is_kfac_on_linear_layers_and_the_gradient_elsewhere(tmp_path, monkeypatch):
    _, algo, grads, out, idx = _last_direction(monkeypatch, tmp_path, "Pendulum-v1", 64, SMALL)
    i_logstd = idx[id(algo.policy.pi.log_std)]
    assert torch.equal(out[i_logstd], grads[i_logstd])              # log σ: not in a linear layer
    m = algo.kfac.layers[0]
    want = _kfac_step(algo, grads, idx, m)
    assert torch.allclose(out[idx[id(m.weight)]], want[0]) and torch.allclose(out[idx[id(m.bias)]], want[1])
    assert not torch.allclose(out[idx[id(m.weight)]], grads[idx[id(m.weight)]])


def test_a_cnn_policy_gets_the_kfac_step_on_its_convolution_too(tmp_path, monkeypatch):
    """MinAtar's 3×3 conv trunk is Kronecker-factored (KFC): its step is the factored one, not g."""
    from torch import nn
    s, algo, grads, out, idx = _last_direction(monkeypatch, tmp_path, "MinAtar/Breakout-v0", 80,
                                               {"n_envs": 2, "n_steps": 20})
    assert s["status"] == "ok"
    convs = [m for m in algo.kfac.layers if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1
    c = convs[0]
    want = _kfac_step(algo, grads, idx, c)
    assert torch.allclose(out[idx[id(c.weight)]], want[0]) and torch.allclose(out[idx[id(c.bias)]], want[1])
    assert not torch.allclose(out[idx[id(c.weight)]], grads[idx[id(c.weight)]])


@pytest.mark.slow
def test_acktr_learns_cartpole(tmp_path):
    s = execute("acktr", "CartPole-v1", 0, 50_000, tmp_path / "r", {}, progress_bar=False)
    assert s["status"] == "ok" and s["final_eval_return"] >= 400, s["final_eval_return"]


@pytest.mark.slow
def test_acktr_learns_inverted_pendulum(tmp_path):
    """With the MuJoCo entry of hyperparams.yaml (Baselines acktr_cont's batch, KL and λ). The best
    evaluation: with a fixed α (Baselines adapts it to the KL) the return is not stable once learnt
    (seed 0: 610 at 50k steps, 110 at 60k)."""
    s = execute("acktr", "InvertedPendulum-v5", 0, 60_000, tmp_path / "r", {}, progress_bar=False)
    best = max(float(r["return_mean"]) for r in _rows(tmp_path / "r" / "eval.csv"))
    assert s["status"] == "ok" and best >= 500, best
