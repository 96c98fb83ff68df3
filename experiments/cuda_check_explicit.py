"""Explicit backprop (core/explicit.py) on CUDA against autograd and torch.optim.Adam on the same device,
and against the CPU: PPO's minibatch gradient, NPG's g and F·v, FlatAdam's step; continuous ACER's update
(its autograd gradient, the path it takes off the CPU, and FlatRMSprop's step on every device; on the CPU the
NumPy update, ``acer_numpy.NumpySDN``, against it). Prints JSON; exit 1 if a relative difference is ≥ 1e-4.
Standalone and light (torch, numpy, gymnasium and its three small dependencies only), so it runs on the lent
GPU machine when the full ``experiments.cuda_check`` bundle does not fit beside the tracked tree (2026-11-26:
61.5 MB tracked + 28 MiB of wheels > 64 MiB):

    # the wheels of gymnasium, cloudpickle, farama-notifications, typing_extensions in DIR (carried)
    python3 -m pip install -q --no-index --no-deps --target /tmp/site DIR/*.whl
    PYTHONPATH=/tmp/site:. python3 -m experiments.cuda_check_explicit

Without CUDA it compares the CPU with itself (a smoke test of the script; ``tests/test_cuda_check.py``).
Result of 2026-11-27 on an H200, torch 2.11.0+cu130, at the commit after ``332d0de``:
results/device/explicit_cuda_check.json (every relative difference < 1.1e-6; ACER's explicit gradient
against autograd 2.0e-7 on the device, CUDA against CPU 1.1e-6). The tracked tree had grown past the
device's 64 MiB transfer limit (64.3 MiB), so ``results/snapshot/replication/runs`` was moved aside
for that one call. The first result, of 2026-11-26 (PPO and NPG only), was of the same size (all < 8e-7).
Rerun on an H200 at 17:29 UTC the same day at `7ad3e36` (NPG's π_old now from the explicit
forward; ``results/snapshot`` moved aside for the call): passed, every relative difference < 8.6e-7; and
at 17:51 with ``npg_pi_old_vs_module`` (π_old's log-probabilities from the explicit forward against the
module's): 0.0 on the CPU and on the device, the rest as before. Continuous ACER's written-out torch update
(``ExplicitSDN``) was replaced by the NumPy one (CPU only) on 2026-11-27; since then the ACER part compares
the device's autograd update with the CPU's autograd and NumPy updates."""
import json
import sys

import gymnasium as gym
import torch

from algorithms.acer import ACERConfig
from algorithms.acer_continuous import SDNet, continuous_terms
from algorithms.acer_numpy import NumpySDN
from algorithms.core.explicit import FlatAdam, FlatParams, FlatRMSprop
from algorithms.core.fisher import flat_grad, kl_hessian_fvp
from algorithms.core.nets import ActorCritic
from algorithms.core.replay import Trajectory
from algorithms.ppo import PPO, PPOConfig
from algorithms.trpo import NPG, NPGConfig

OBS = gym.spaces.Box(-1, 1, (11,))
SPACES = {"discrete": gym.spaces.Discrete(4), "continuous": gym.spaces.Box(-1, 1, (3,))}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).norm() / max(float(a.norm()), 1e-30))


def policy(space: gym.Space, dev: str, seed: int = 0) -> ActorCritic:
    torch.manual_seed(seed)
    pi = ActorCritic(OBS, space, (64, 64), log_std_init=-0.3)
    with torch.no_grad():   # off the orthogonal init, so every layer's term matters
        for p in pi.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return pi.to(dev)


def minibatch(space: gym.Space, dev: str, B: int = 256) -> list[torch.Tensor]:
    """(s, a, log π_old, V_old, A, R), drawn on the CPU and moved: the same numbers on every device."""
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(B, 11, generator=g)
    with torch.no_grad():
        d, v = policy(space, "cpu")(obs)
        act = d.sample(generator=g)
        logp_old = d.log_prob(act) + 0.3 * torch.randn(B, generator=g)
    v_old = v + 0.2 * torch.randn(B, generator=g)
    A, R = torch.randn(B, generator=g), torch.randn(B, generator=g)
    return [x.to(dev) for x in (obs, act, logp_old, v_old, A, R)]


def one_device(space: gym.Space, dev: str) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    ppo = PPO.__new__(PPO)   # only what the minibatch step reads
    ppo.cfg, ppo.policy = PPOConfig(clip_range_vf=0.2, ent_coef=0.01), policy(space, dev)
    ppo.bind()
    mb = minibatch(space, dev)
    ppo.autograd_grad(*mb, eps=0.2)
    g_auto = ppo.flat.grad.clone()
    ppo.explicit_grad(*mb, eps=0.2)
    g_exp = ppo.flat.grad.clone()
    ref = policy(space, dev)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=1e-3, eps=1e-5)
    for p, gv in zip(ref.parameters(), ppo.flat.views(g_exp)):
        p.grad = gv.clone()
    ref_opt.step()
    FlatAdam(ppo.flat, 1e-3, 1e-5).step()
    theta_ref = torch.cat([p.detach().reshape(-1) for p in ref.parameters()])

    npg = NPG.__new__(NPG)
    npg.cfg, npg.policy = NPGConfig(cg_damping=0.1), policy(space, dev)
    npg.bind_actor()
    obs, act, _, _, A, _ = mb
    with torch.no_grad():
        old = npg.policy.dist(obs)
        logp_old = old.log_prob(act)
    old_exp, _, g, Fv = npg.explicit_gradient_and_fisher(obs, act, A)   # π_old from its own explicit forward
    dist, params = npg.policy.dist(obs), npg.policy.actor_parameters()
    g_ref = flat_grad((torch.exp(dist.log_prob(act) - logp_old) * A).mean(), params, retain_graph=True)
    Fv_ref = kl_hessian_fvp(old.kl(dist).mean(), params, 0.1)
    v = torch.randn(g.shape, generator=torch.Generator().manual_seed(3)).to(dev)
    Fv_v = Fv(v)
    numbers = {"ppo_explicit_vs_autograd": rel(g_auto, g_exp),
               "flat_adam_vs_torch_adam": rel(theta_ref, ppo.flat.theta),
               "npg_g_vs_autograd": rel(g_ref, g), "npg_Fv_vs_kl_hessian": rel(Fv_ref(v), Fv_v),
               "npg_pi_old_vs_module": rel(logp_old, old_exp.log_prob(act))}
    return numbers, {"g_exp": g_exp, "theta": ppo.flat.theta.clone(), "g": g, "Fv": Fv_v}


def acer_one_device(dev: str) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """One continuous ACER update on a (20, 4) batch with terminations and truncations: the gradient of
    ``continuous_terms``' loss by autograd and FlatRMSprop's step against torch.optim.RMSprop; on the CPU
    also the NumPy update's gradient and z* against them. The SDN's action samples are drawn on the CPU
    and moved, so that every device sees the same numbers."""
    T, B, D = 20, 4, 3
    torch.manual_seed(0)
    spaces = OBS, SPACES["continuous"]
    net, avg = SDNet(*spaces, (64, 64), "tanh"), SDNet(*spaces, (64, 64), "tanh", -0.5)
    with torch.no_grad():
        for p, q in zip(net.parameters(), avg.parameters()):
            p.add_(0.3 * torch.randn_like(p))
            q.copy_(p + 0.05 * torch.randn_like(p))
    net, avg = net.to(dev), avg.to(dev)
    g = torch.Generator().manual_seed(2)
    term, end = (torch.rand(T, B, generator=g) < 0.05).float(), (torch.rand(T, B, generator=g) < 0.1).float()
    end = torch.maximum(end, term)
    batch = Trajectory(obs=torch.randn(T + 1, B, 11, generator=g), actions=torch.randn(T, B, D, generator=g),
                       rewards=torch.randn(T, B, generator=g), terminated=term, episode_end=end,
                       stats={"mean": 0.5 * torch.randn(T, B, D, generator=g),
                              "log_std": -0.5 + 0.2 * torch.randn(T, B, D, generator=g)},
                       final_t=torch.tensor([3, 11]), final_b=torch.tensor([0, 2]),
                       final_obs=torch.randn(2, 11, generator=g)).to(torch.device(dev))
    cfg = ACERConfig(c=5.0, delta=0.3)
    draws = torch.randn(1 + cfg.sdn_samples, T, B, D, generator=torch.Generator().manual_seed(5))
    randn = torch.randn

    def cpu_draws(*shape, device=None, **kw):   # the SDN's a'_t, u_i: the same numbers on every device
        if tuple(shape) != tuple(draws.shape):
            return randn(*shape, device=device, **kw)
        return draws if device is None else draws.to(device)

    torch.randn = cpu_draws
    try:
        ref = continuous_terms(net, avg, batch, cfg)
        ref["loss"].backward()
        g_auto = torch.cat([p.grad.reshape(-1) for p in net.parameters()])
        flat = FlatParams(list(net.parameters()))
        numbers = {}
        if dev == "cpu":
            out = NumpySDN(net, avg, flat, FlatParams(list(avg.parameters()))).gradient(batch, cfg)
            numbers = {"acer_numpy_vs_autograd": rel(g_auto, flat.grad),
                       "acer_numpy_z_vs_autograd_terms": rel(ref["z"].detach(), torch.from_numpy(out["z"]))}
    finally:
        torch.randn = randn
    flat.grad.copy_(g_auto)
    shadow = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
    for p, gv in zip(shadow, flat.views(g_auto)):
        p.grad = gv.clone()
    torch.optim.RMSprop(shadow, lr=7e-4, alpha=0.99, eps=1e-5).step()
    FlatRMSprop(flat, 7e-4, alpha=0.99, eps=1e-5).step()
    theta_ref = torch.cat([p.detach().reshape(-1) for p in shadow])
    numbers["flat_rmsprop_vs_torch_rmsprop"] = rel(theta_ref, flat.theta)
    return numbers, {"g_auto": g_auto, "theta": flat.theta.clone(), "q_ret": ref["q_ret"], "z": ref["z"].detach()}


def main() -> int:
    gpu = "cuda" if torch.cuda.is_available() else "cpu"
    out: dict = {"device": torch.cuda.get_device_name(0) if gpu == "cuda" else "cpu only", "torch": torch.__version__}
    for kind, space in SPACES.items():
        tensors = {}
        for dev in ("cpu", gpu):
            out[f"{kind}_{dev}"], tensors[dev] = one_device(space, dev)
        out[f"{kind}_{gpu}_vs_cpu"] = {k: rel(tensors["cpu"][k], tensors[gpu][k]) for k in tensors["cpu"]}
    tensors = {}
    for dev in ("cpu", gpu):
        out[f"acer_{dev}"], tensors[dev] = acer_one_device(dev)
    out[f"acer_{gpu}_vs_cpu"] = {k: rel(tensors["cpu"][k], tensors[gpu][k]) for k in tensors["cpu"]}
    bad = [f"{k}.{m}" for k, d in out.items() if isinstance(d, dict) for m, x in d.items() if not x < 1e-4]
    out.update(passed=not bad, failed=bad)
    print(json.dumps(out, indent=1))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
