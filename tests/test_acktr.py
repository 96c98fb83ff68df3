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
        assert np.isfinite(float(r["kl"])) and float(r["kl"]) >= -1e-6        # ≥ 0 up to float32 rounding
    assert any(float(r["step_scale"]) < 1 for r in rows)          # the trust region binds somewhere


def test_alpha_follows_the_measured_kl_as_acktr_cont_adapts_it(tmp_path):
    """kl_target > 0 (the MuJoCo entry): the α each update logs is the previous one ÷ 1.5 after a KL
    above 2·kl_target, × 1.5 after one below kl_target / 2, unchanged between — recomputed from the
    logged KLs; and the adaptation survives a resume (α is checkpointed)."""
    sets = {**SMALL, "kl_target": 0.002, "kl_clip": 0.01, "learning_rate": 0.03, "lr_schedule": "constant"}
    s = execute("acktr", "Pendulum-v1", 0, 4000, tmp_path / "r", sets, progress_bar=False)
    assert s["status"] == "ok", s.get("error")
    rows = _rows(tmp_path / "r" / "progress.csv")
    alpha, moves = 0.03, set()
    for r in rows:
        assert float(r["learning_rate"]) == pytest.approx(alpha, rel=1e-9)
        kl = float(r["kl"])
        f = 1 / 1.5 if kl > 0.004 else 1.5 if kl < 0.001 else 1.0
        moves.add(f)
        alpha = min(1.0, max(1e-8, alpha * f))
    assert moves != {1.0}                                          # α did move


def test_the_update_is_baselines_momentum_at_rate_alpha_times_one_minus_mu(monkeypatch, tmp_path):
    """θ_new = θ − α(1 − μ)(μ v + s Δ), recomputed from the parameters and velocity saved just before the
    last update, its direction Δ and the step scale s and α it logged."""
    from algorithms.acktr import ACKTR

    saved = {}
    orig = ACKTR.natural_direction

    def spy(self, grads):
        out = orig(self, grads)
        saved.update(theta=[p.detach().clone() for p in self.params], v=[v.clone() for v in self.velocity],
                     delta=[d.clone() for d in out], algo=self)
        return out
    monkeypatch.setattr(ACKTR, "natural_direction", spy)
    execute("acktr", "Pendulum-v1", 1, 1024, tmp_path / "r", SMALL, progress_bar=False)
    last = _rows(tmp_path / "r" / "progress.csv")[-1]
    lr, sc, mu = float(last["learning_rate"]), float(last["step_scale"]), ACKTRConfig().momentum
    algo = saved["algo"]
    for th, v, d, p in zip(saved["theta"], saved["v"], saved["delta"], algo.params, strict=True):
        torch.testing.assert_close(p.detach(), th - lr * (1 - mu) * (mu * v + sc * d), rtol=1e-5, atol=1e-7)
    assert any(v.abs().sum() > 0 for v in saved["v"])                # momentum is in play


def test_the_adapted_alpha_is_checkpointed(monkeypatch, tmp_path):
    sets = {**SMALL, "kl_target": 0.002, "learning_rate": 0.03, "lr_schedule": "constant"}
    _, algo, *_ = _last_direction(monkeypatch, tmp_path / "a", "Pendulum-v1", 2048, sets)
    _, fresh, *_ = _last_direction(monkeypatch, tmp_path / "b", "Pendulum-v1", 64, sets)
    assert algo.alpha_scale != 1.0 and fresh.alpha_scale != algo.alpha_scale
    fresh.load_state_dict(algo.state_dict())
    assert fresh.alpha_scale == algo.alpha_scale


def test_same_seed_same_numbers_and_the_factors_resume(tmp_path):
    outs = []
    for name in ("a", "b"):
        execute("acktr", "Pendulum-v1", 3, 1024, tmp_path / name, SMALL, progress_bar=False)
        outs.append([{k: v for k, v in r.items() if k not in ("wall_s", "train_s")}
                     for r in _rows(tmp_path / name / "progress.csv")])
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
    """Baselines' `acktr` defaults (16 envs × 20 steps, α 0.25 decaying linearly, δ_KL 0.001), stepped as
    its KfacOptimizer (momentum at rate α(1 − μ)). Measured on 2026-11-26 at 80k steps, best / final
    evaluation: seed 0 414 / 412, seed 1 500 / 420, seed 2 405 / 404 (random policy ≈ 22)."""
    s = execute("acktr", "CartPole-v1", 0, 80_000, tmp_path / "r", {}, progress_bar=False)
    best = max(float(r["return_mean"]) for r in _rows(tmp_path / "r" / "eval.csv"))
    assert s["status"] == "ok" and best >= 350 and s["final_eval_return"] >= 300, (best, s["final_eval_return"])


@pytest.mark.slow
def test_acktr_learns_inverted_pendulum(tmp_path):
    """With the MuJoCo entry of hyperparams.yaml (Baselines acktr_cont: 2 500-step batches, α adapted to
    a measured KL of 0.002, separate actor and critic trust regions, standardised advantages): 60
    updates. Seed 0 measured on 2026-11-26: eval 444 at 60k steps, 1 000 from 80k on (before the
    advantages were standardised: 1 000 only from 120k)."""
    s = execute("acktr", "InvertedPendulum-v5", 0, 150_000, tmp_path / "r", {}, progress_bar=False)
    best = max(float(r["return_mean"]) for r in _rows(tmp_path / "r" / "eval.csv"))
    assert s["status"] == "ok" and best >= 900, best


def test_actor_and_critic_each_get_their_own_trust_region(monkeypatch, tmp_path):
    """critic_kl_clip > 0 (acktr_cont's two optimizers): the logged actor scale is recomputed from the
    actor's parameters alone, min(1, √(δ_KL / (α² g_πᵀΔ_π))), the critic's from its own against its δ."""
    sets = {**SMALL, "kl_clip": 0.01, "critic_kl_clip": 0.3, "learning_rate": 0.5, "lr_schedule": "constant"}
    s, algo, grads, delta, _ = _last_direction(monkeypatch, tmp_path, "Pendulum-v1", 1024, sets)
    last = _rows(tmp_path / "r" / "progress.csv")[-1]
    lr = float(last["learning_rate"])
    gd = [float((g * d).sum()) for g, d in zip(grads, delta)]
    actor = sum(x for x, c in zip(gd, algo.is_critic) if not c)
    critic = sum(x for x, c in zip(gd, algo.is_critic) if c)
    assert 0 < sum(algo.is_critic) < len(algo.is_critic)
    assert float(last["step_scale"]) == pytest.approx(min(1.0, (0.01 / (lr ** 2 * actor)) ** 0.5), rel=1e-5)
    assert float(last["critic_step_scale"]) == pytest.approx(min(1.0, (0.3 / (lr ** 2 * critic)) ** 0.5), rel=1e-5)
    assert float(last["step_scale"]) < 1                              # the actor's region binds at α 0.5
