"""ops.conv2d's gradients on CPU (kernel gradient by matmuls) vs torch.

ops.conv2d differentiates w.r.t. its kernel with one matmul per tap on CPU
(ops._kernel_grad) where that is faster than XLA:CPU's own kernel-gradient
conv (>= 32 input channels, output positions x channels >= 2^19). The
gradients must still be the conv's: the rule itself is checked against
torch autograd on the same numbers, for the strides, kernels and paddings
the models use and a few they do not (stride 3, even kernels, asymmetric
padding, odd sizes), and ops.conv2d on a shape that takes it.
"""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from padinv_jax.models import ops

CASES = [  # (n, h, w, cin, cout, k, stride, padding)
    (2, 9, 9, 5, 7, 3, 1, 1),
    (2, 9, 10, 5, 7, 3, 2, 1),   # odd size, stride 2 (IR-SE, Map2Style)
    (1, 8, 8, 4, 6, 1, 2, 0),    # 1x1 stride-2 shortcut
    (2, 7, 7, 3, 4, 1, 1, 0),
    (2, 11, 12, 3, 4, 3, 3, ((0, 2), (1, 0))),
    (2, 10, 10, 4, 4, 4, 2, ((1, 2), (0, 1))),
    (1, 6, 6, 3, 2, 3, 1, 0),    # valid conv (the padded generator layers)
    (2, 5, 4, 3, 2, 3, 4, 1),    # stride above the size: empty phases
    (1, 2, 7, 3, 2, 2, 3, ((0, 1), (2, 0))),
]


def _pad(padding):
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  return padding


def _torch_grads(x, w, dy, stride, padding):
  (t, b), (l, r) = ((padding, padding), (padding, padding)) if isinstance(
      padding, int) else padding
  xt = torch.tensor(x.transpose(0, 3, 1, 2), dtype=torch.float64,
                    requires_grad=True)
  wt = torch.tensor(w.transpose(3, 2, 0, 1), dtype=torch.float64,
                    requires_grad=True)
  y = torch.nn.functional.conv2d(torch.nn.functional.pad(xt, (l, r, t, b)),
                                 wt, stride=stride)
  y.backward(torch.tensor(dy.transpose(0, 3, 1, 2), dtype=torch.float64))
  return (xt.grad.numpy().transpose(0, 2, 3, 1),
          wt.grad.numpy().transpose(2, 3, 1, 0), y.detach().numpy())


@pytest.mark.parametrize("case", CASES)
def test_conv_grads_match_torch(case):
  n, h, w_, cin, cout, k, stride, padding = case
  rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
  x = rng.standard_normal((n, h, w_, cin)).astype(np.float32)
  w = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
  f = lambda x, w: ops._conv2d_dot_wgrad(x, w, stride, _pad(padding), None)
  _check_against_torch(f, x, w, rng, stride, padding, case)


def test_conv2d_takes_the_rule_and_matches_torch():
  n, h, cin, cout, stride, padding = 2, 64, 64, 8, 1, 1
  assert ops._matmul_kernel_grad_pays((n, h, h, cin), (3, 3, cin, cout),
                                      stride, _pad(padding))
  rng = np.random.default_rng(7)
  x = rng.standard_normal((n, h, h, cin)).astype(np.float32)
  w = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
  f = lambda x, w: ops.conv2d(x, w, stride=stride, padding=padding)
  _check_against_torch(f, x, w, rng, stride, padding, "32x32x32")


def _check_against_torch(f, x, w, rng, stride, padding, case):
  y, vjp = jax.vjp(jax.jit(f), jnp.asarray(x), jnp.asarray(w))
  dy = rng.standard_normal(y.shape).astype(np.float32)
  dx, dw = vjp(jnp.asarray(dy))
  rx, rw, ry = _torch_grads(x, w, dy, stride, padding)
  assert y.shape == ry.transpose(0, 2, 3, 1).shape
  for name, a, ref in (("dx", dx, rx), ("dw", dw, rw)):
    err = np.abs(np.asarray(a, np.float64) - ref).max() / np.abs(ref).max()
    assert err < 1e-6, (case, name, err)


def test_cpu_uses_the_matmul_kernel_gradient(monkeypatch):
  """The custom rule is what runs on CPU, and switching it off gives XLA's."""
  assert jax.default_backend() == "cpu"
  x = jnp.ones((2, 64, 64, 64))
  w = jnp.ones((3, 3, 64, 4))
  loss = lambda w: jnp.sum(ops.conv2d(x, w, stride=1, padding=1) ** 2)
  # Under grad the rule is inlined: its kernel gradient is dot_generals.
  assert "dot_general" in str(jax.make_jaxpr(jax.grad(loss))(w))
  monkeypatch.setattr(ops, "CPU_CONV_REWRITES", False)
  assert "dot_general" not in str(jax.make_jaxpr(jax.grad(loss))(w))
  # Shapes where XLA's conv is faster keep it.
  monkeypatch.setattr(ops, "CPU_CONV_REWRITES", True)
  small = lambda w: jnp.sum(ops.conv2d(x[:, :8, :8], w, padding=1) ** 2)
  assert "dot_general" not in str(jax.make_jaxpr(jax.grad(small))(w))


def test_second_order_gradients_flow_through_the_rule():
  """R1 differentiates a gradient w.r.t. the input again w.r.t. the kernel."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 6, 6, 3)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((3, 3, 3, 4)), jnp.float32)

  def r1(w, conv):
    g = jax.grad(lambda x: jnp.sum(jnp.tanh(conv(x, w))))(x)
    return jnp.sum(g ** 2)

  ours = jax.grad(r1)(w, lambda x, w: ops._conv2d_dot_wgrad(
      x, w, 2, ((1, 1), (1, 1)), None))
  xla = jax.grad(r1)(w, lambda x, w: ops._conv2d_lax(x, w, 2, ((1, 1),
                                                              (1, 1))))
  np.testing.assert_allclose(ours, xla, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k,stride,padding", [(3, 2, 1), (3, 1, 1), (1, 2, 0)])
def test_conv_patches_matmul_is_the_conv(k, stride, padding):
  rng = np.random.default_rng(k * 10 + stride)
  x = rng.standard_normal((2, 9, 8, 5)).astype(np.float32)
  w = rng.standard_normal((k, k, 5, 3)).astype(np.float32)
  p = ops.conv_patches(jnp.asarray(x), k, stride, padding)
  y = np.asarray(p @ jnp.asarray(w).reshape(k * k * 5, 3), np.float64)
  _, _, ref = _torch_grads(x, w, np.zeros_like(y),
                           stride, padding)
  ref = ref.transpose(0, 2, 3, 1)
  assert y.shape == ref.shape
  assert np.abs(y - ref).max() <= 1e-5 * np.abs(ref).max()


TINY = [  # (n, h, w, cin, cout, k, stride, padding): input within the kernel
    (2, 2, 2, 6, 5, 3, 2, 1),    # the Map2Style heads' last conv, 2x2 -> 1x1
    (1, 1, 1, 4, 3, 3, 1, 1),
    (2, 3, 3, 4, 3, 3, 1, 1),
    (2, 2, 3, 4, 3, 3, 2, ((1, 0), (0, 1))),
]


@pytest.mark.parametrize("case", TINY)
def test_tiny_input_conv_is_a_matmul_and_matches_torch(case):
  n, h, w_, cin, cout, k, stride, padding = case
  assert ops._input_within_kernel((n, h, w_, cin), (k, k, cin, cout))
  rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
  x = rng.standard_normal((n, h, w_, cin)).astype(np.float32)
  w = rng.standard_normal((k, k, cin, cout)).astype(np.float32)
  f = lambda x, w: ops.conv2d(x, w, stride=stride, padding=padding)
  _check_against_torch(f, x, w, rng, stride, padding, case)


def _hlo_convs(f, *args):
  text = jax.jit(f).lower(*args).compile().as_text()
  return [l for l in text.splitlines() if " convolution(" in l]


def test_tiny_input_conv_has_no_reversed_kernel_conv(monkeypatch):
  """XLA swaps a conv whose input fits in its kernel into a reversed-kernel
  conv (a naive loop on CPU); the matmul path compiles to no conv at all,
  forward and backward. Without the rewrite the swapped conv is there (so
  the check can fail)."""
  x = jnp.ones((2, 2, 2, 64))
  w = jnp.ones((3, 3, 64, 32))
  fwd = lambda x, w: ops.conv2d(x, w, stride=2, padding=1)
  grads = jax.grad(lambda x, w: jnp.sum(fwd(x, w) ** 2), (0, 1))
  assert _hlo_convs(fwd, x, w) == []
  assert _hlo_convs(grads, x, w) == []
  monkeypatch.setattr(ops, "CPU_CONV_REWRITES", False)
  # A new function: jit's trace cache would give back the one above.
  convs = _hlo_convs(lambda x, w: ops.conv2d(x, w, stride=2, padding=1), x, w)
  assert any("rhs_reversal" in l or "01fb" in l for l in convs), convs


def test_strided_conv_input_gradient_has_no_dilated_conv(monkeypatch):
  """On CPU a strided conv's input gradient is stride-1 phase convs, not
  XLA's conv over the zero-dilated output gradient (lhs_dilate); without the
  rewrite that conv is there, so the check can fail."""
  x = jnp.ones((2, 16, 16, 8))
  w = jnp.ones((3, 3, 8, 8))
  def dx_of():  # a new function each time: jit's trace cache
    return lambda x, w: jax.grad(lambda x: jnp.sum(ops.conv2d(
        x, w, stride=2, padding=1) ** 2))(x)
  lhs_dilated = lambda: [l for l in _hlo_convs(dx_of(), x, w)
                         if "lhs_dilate" in l]
  assert lhs_dilated() == []
  monkeypatch.setattr(ops, "CPU_CONV_REWRITES", False)
  assert lhs_dilated() != []


# bfloat16 convs on CPU as one float32-accumulated matmul per tap
# (ops._conv2d_tap_dots): N, H, W, Cin, Cout, k, stride, padding.
BF16 = [(1, 8, 8, 128, 16, 3, 1, 1), (2, 9, 7, 128, 8, 3, 2, 1),
        (1, 6, 6, 256, 8, 3, 2, ((0, 1), (1, 0))), (1, 5, 5, 128, 4, 2, 1, 0)]


@pytest.mark.parametrize("case", BF16)
def test_bf16_conv_is_tap_matmuls_and_matches_torch(case):
  """Against torch's float64 conv of the same bfloat16-rounded operands:
  the only error left is the float32 accumulation and the final bfloat16
  rounding (2^-8 relative), not the operands'. The HLO has no conv."""
  n, h, w_, cin, cout, k, stride, padding = case
  pad = ((padding, padding), (padding, padding)) if isinstance(
      padding, int) else padding
  rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
  x = jnp.asarray(rng.standard_normal((n, h, w_, cin)), jnp.bfloat16)
  w = jnp.asarray(rng.standard_normal((k, k, cin, cout)), jnp.bfloat16)
  assert ops._bf16_tap_dots_pay(x, w.shape, stride, pad)
  f = lambda x, w: ops.conv2d(x, w, stride=stride, padding=padding)
  y = np.asarray(jax.jit(f)(x, w), np.float64)
  assert _hlo_convs(f, x, w) == []
  xt = torch.from_numpy(np.asarray(x, np.float64)).permute(0, 3, 1, 2)
  wt = torch.from_numpy(np.asarray(w, np.float64)).permute(3, 2, 0, 1)
  xt = torch.nn.functional.pad(xt, (pad[1][0], pad[1][1], pad[0][0],
                                    pad[0][1]))
  ref = torch.nn.functional.conv2d(xt, wt, stride=stride).permute(
      0, 2, 3, 1).numpy()
  assert y.shape == ref.shape
  np.testing.assert_allclose(y, ref, rtol=2 ** -7, atol=2 ** -7 * np.abs(
      ref).max())
  # Its gradient is the bfloat16 conv's, to bfloat16 rounding.
  g = jax.grad(lambda x: jnp.sum(f(x, w).astype(jnp.float32) ** 2))(x)
  g_lax = jax.grad(lambda x: jnp.sum(ops._conv2d_lax(
      x, w, stride, pad).astype(jnp.float32) ** 2))(x)
  g, g_lax = np.asarray(g, np.float64), np.asarray(g_lax, np.float64)
  assert np.linalg.norm(g - g_lax) <= 2e-2 * np.linalg.norm(g_lax)


def test_bf16_tap_dots_only_where_they_paid():
  """float32, 64 channels and large maps keep XLA's conv."""
  x32 = jnp.ones((1, 32, 32, 256))
  pad = ((1, 1), (1, 1))
  assert not ops._bf16_tap_dots_pay(x32, (3, 3, 256, 256), 1, pad)
  x16 = x32.astype(jnp.bfloat16)
  assert ops._bf16_tap_dots_pay(x16, (3, 3, 256, 256), 1, pad)
  assert not ops._bf16_tap_dots_pay(jnp.ones((1, 32, 32, 64), jnp.bfloat16),
                                    (3, 3, 64, 64), 1, pad)
  assert not ops._bf16_tap_dots_pay(jnp.ones((1, 256, 256, 128),
                                             jnp.bfloat16),
                                    (3, 3, 128, 128), 1, pad)
  assert not ops._bf16_tap_dots_pay(x16, (1, 1, 256, 256), 1, ((0, 0),) * 2)
