"""The MLPs' tanh (core/activations.py: NumPy's kernel forward, torch's tanh_backward) against torch's
tanh: value to an ulp, first and second derivatives, the in-place and module forms, and the
fallbacks (torch.func transforms, other dtypes)."""
import gymnasium as gym
import pytest
import torch

from algorithms.core.activations import ACTIVATIONS, Tanh, tanh, tanh_
from algorithms.core.nets import ActorCritic, linear_stack


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_value_is_torchs_tanh_to_an_ulp(dtype):
    z = torch.cat([torch.randn(4000, dtype=dtype) * 3, torch.tensor([0.0, -0.0, 1e-30, 9.0, 20.0, -20.0], dtype=dtype)])
    h, want = tanh(z), torch.tanh(z)
    ulp = torch.finfo(dtype).eps * want.abs().clamp(min=torch.finfo(dtype).tiny)
    assert h.dtype == dtype and torch.all((h - want).abs() <= ulp)
    assert h.abs().max() <= 1 and torch.equal(torch.sign(h), torch.sign(want))


def test_gradient_and_second_derivative_are_torchs_given_the_same_output():
    """∂/∂z = g ⊙ (1 − h²) exactly (aten.tanh_backward of our h); the second derivative, as the
    Fisher-vector products take it (double backward), to float64 rounding."""
    z = torch.randn(50, 7, dtype=torch.float64, requires_grad=True)
    g = torch.randn(50, 7, dtype=torch.float64)
    h = tanh(z)
    (dz,) = torch.autograd.grad(h, z, g, create_graph=True)
    assert torch.equal(dz, torch.ops.aten.tanh_backward(g, h.detach()))   # autograd's tanh, given h
    torch.testing.assert_close(dz, g * (1 - h.detach() ** 2), rtol=0, atol=1e-15)
    z2 = z.detach().clone().requires_grad_()
    (dz2,) = torch.autograd.grad(torch.tanh(z2), z2, g, create_graph=True)
    v = torch.randn_like(z)
    (hv,) = torch.autograd.grad(dz, z, v)
    (hv2,) = torch.autograd.grad(dz2, z2, v)
    torch.testing.assert_close(hv, hv2, rtol=1e-12, atol=1e-14)


def test_in_place_module_and_grad_free_forms_agree_bit_for_bit():
    z = torch.randn(33, 9) * 2
    out = tanh(z)
    with torch.no_grad():
        assert torch.equal(Tanh()(z), out)
    zz = z.clone()
    assert tanh_(zz) is zz and torch.equal(zz, out)
    zt = z.t()                                      # not contiguous: torch's in-place tanh
    assert torch.allclose(tanh_(zt.clone()), out.t(), atol=1e-6)
    assert torch.equal(tanh(z.t()), out.t())         # out of place: any strides
    leaf = z.clone().requires_grad_()
    with torch.no_grad():
        assert torch.equal(tanh(leaf), out)


def test_torch_func_transforms_and_other_dtypes_fall_back_to_torch():
    from torch.func import jacrev, vmap
    z = torch.randn(4, 3)
    J = vmap(jacrev(tanh))(z)                       # per-row Jacobians: diag(1 − tanh²)
    assert torch.allclose(J, torch.diag_embed(1 - torch.tanh(z) ** 2), atol=1e-6)
    half = torch.randn(5).to(torch.bfloat16)
    assert torch.equal(tanh(half), torch.tanh(half))


def test_the_networks_use_it_and_stay_linear_stacks():
    """ActorCritic's MLPs are built with it; the explicit pass and the NumPy actor still read them as
    Linear/tanh stacks; the trunk's forward is Linear → tanh → Linear → tanh."""
    pi = ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2))
    assert ACTIVATIONS["tanh"] is Tanh and any(isinstance(m, Tanh) for m in pi.modules())
    stack = linear_stack(pi.pi_trunk)
    assert [a for _, a in stack] == ["tanh", "tanh"]
    x = torch.randn(10, 4)
    with torch.no_grad():
        h = x
        for m, _ in stack:
            h = torch.tanh(m(h))
        torch.testing.assert_close(pi.pi_trunk(x), h, rtol=0, atol=1e-6)
