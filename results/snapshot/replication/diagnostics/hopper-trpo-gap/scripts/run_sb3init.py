"""Ours (``python -m experiments.run`` arguments) starting from the initial weights sb3-contrib's TRPO
draws for the same seed (built by SB3 itself, copied into our networks in place): bisects the
ours-v-sb3-contrib Hopper-v5 gap on the initialisation (../README.md)."""
import sys

import gymnasium as gym
import torch
from sb3_contrib import TRPO
from torch import nn

import algorithms.trpo as trpo
from experiments.run import main

_init = trpo.NPG.__init__


def _linears(*modules: nn.Module) -> list[nn.Linear]:
    return [m for x in modules for m in x.modules() if isinstance(m, nn.Linear)]


def init(self, cfg, run) -> None:
    _init(self, cfg, run)
    env = gym.make(run.env_id)
    ref = TRPO("MlpPolicy", env, seed=run.seed, device="cpu",
               policy_kwargs=dict(net_arch=dict(pi=list(cfg.net_arch), vf=list(cfg.net_arch)),
                                  activation_fn=nn.Tanh, log_std_init=cfg.log_std_init)).policy
    p = self.policy
    pairs = (list(zip(_linears(p.pi_trunk, p.pi.linear), _linears(ref.mlp_extractor.policy_net, ref.action_net)))
             + list(zip(_linears(p.v_trunk, p.v), _linears(ref.mlp_extractor.value_net, ref.value_net))))
    with torch.no_grad():        # in place: the flat parameter vectors keep aliasing them
        for a, b in pairs:
            a.weight.copy_(b.weight)
            a.bias.copy_(b.bias)
        p.pi.log_std.copy_(ref.log_std)
    env.close()


trpo.NPG.__init__ = init

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
