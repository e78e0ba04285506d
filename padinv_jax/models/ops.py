"""Low-level ops with the exact semantics of the PyTorch originals (NHWC).

Nothing here knows about encoders or generators: FIR resampling (NVIDIA's
upfirdn2d, in fir.py, re-exported here), bias + activation, equalised-lr
layers, and the PyTorch-semantics BatchNorm and per-channel PReLU that Flax
does not provide.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from padinv_jax.models.fir import fir_filter, upfirdn2d  # noqa: F401 (re-exported)

SQRT2 = math.sqrt(2.0)

# Convs take NHWC inputs and HWIO kernels.
_DN = ("NHWC", "HWIO", "NHWC")

# Whether the XLA:CPU conv rewrites are used: conv2d's matmul kernel
# gradient (_conv2d_dot_wgrad), the shared im2col of the encoder heads
# (conv_patches) and the canonical conv order in loop bodies
# (loop_convs.canonical_convs). Read when a function is traced; False =
# XLA's own convs everywhere. Other backends never use them.
CPU_CONV_REWRITES = True


def cpu_conv_rewrites() -> bool:
  """Whether the CPU conv rewrites apply to what is being traced now."""
  return CPU_CONV_REWRITES and jax.default_backend() == "cpu"


def conv2d(x, w, stride: int = 1, padding=0, lhs_dilation: int = 1,
           groups: int = 1, precision=None):
  """Cross-correlation like torch.nn.functional.conv2d, NHWC / HWIO.

  On CPU, plain convs (groups 1, no lhs dilation) of the shapes where it
  pays (:func:`_matmul_kernel_grad_pays`) differentiate through
  :func:`_conv2d_dot_wgrad`, whose kernel gradient is one matmul per tap;
  values and gradients are the conv's up to float32 rounding.

  Args:
    x: [N, H, W, Cin].
    w: [kh, kw, Cin // groups, Cout].
    stride: int stride.
    padding: int, or ((top, bottom), (left, right)); explicit as in torch.
    lhs_dilation: zero-insertion factor of the input (for transposed convs).
    groups: feature groups.
    precision: lax precision.
  """
  if isinstance(padding, int):
    padding = ((padding, padding), (padding, padding))
  padding = tuple(tuple(int(v) for v in p) for p in padding)
  if groups == 1 and lhs_dilation == 1 and cpu_conv_rewrites():
    if _bf16_tap_dots_pay(x, w.shape, stride, padding):
      return _conv2d_tap_dots(x, w, stride, padding)
    if _input_within_kernel(x.shape, w.shape):
      return _conv2d_patches_dot(x, w.astype(x.dtype), stride, padding,
                                 precision)
    matmul_wgrad = _matmul_kernel_grad_pays(x.shape, w.shape, stride,
                                            padding)
    if matmul_wgrad or stride > 1:
      return _conv2d_custom(x, w.astype(x.dtype), stride, padding, precision,
                            matmul_wgrad, stride > 1)
  return _conv2d_lax(x, w, stride, padding, lhs_dilation, groups, precision)


def _conv2d_lax(x, w, stride, padding, lhs_dilation=1, groups=1,
                precision=None):
  return jax.lax.conv_general_dilated(
      x, w.astype(x.dtype), window_strides=(stride, stride), padding=padding,
      lhs_dilation=(lhs_dilation, lhs_dilation), dimension_numbers=_DN,
      feature_group_count=groups, precision=precision)


# XLA:CPU runs bfloat16 convs no faster than float32 ones (80-170 GFLOP/s
# here), while its bfloat16 matmuls use AMX (200-350). A bfloat16 conv is
# therefore one matmul per kernel tap, accumulated in float32: 3-3.5x the
# float32 conv for the encoder heads' stride-2 512-channel convs, 1.2-2.5x for
# the body's 128-512-channel stride-1 convs, but 3x SLOWER on 64 channels or
# large maps (one-off microbenchmark, README "bfloat16 in the encoder"), so
# only where it paid. Operands rounded as in a bfloat16 conv.
def _bf16_tap_dots_pay(x, w_shape, stride, padding) -> bool:
  n, h, w, cin = x.shape
  kh, kw = w_shape[:2]
  ho = (h + sum(padding[0]) - kh) // stride + 1
  wo = (w + sum(padding[1]) - kw) // stride + 1
  return (x.dtype == jnp.bfloat16 and kh * kw > 1 and cin >= 128
          and n * ho * wo <= 2 ** 14)


def _conv2d_tap_dots(x, w, stride, padding):
  kh, kw, cin, _ = w.shape
  xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  n, h, wd, _ = xp.shape
  ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
  w = w.astype(x.dtype)
  y = None
  for a in range(kh):
    for b in range(kw):
      tap = jax.lax.slice(xp, (0, a, b, 0), (n, a + stride * (ho - 1) + 1,
                                              b + stride * (wo - 1) + 1, cin),
                          (1, stride, stride, 1))
      t = jax.lax.dot_general(tap, w[a, b], (((3,), (0,)), ((), ())),
                              preferred_element_type=jnp.float32)
      y = t if y is None else y + t
  return y.astype(x.dtype)


# When a conv's input is no larger than its kernel (the encoder heads' last
# 2x2 -> 1x1 convs), XLA's algebraic simplifier swaps its operands into a
# conv with a reversed kernel (01fb_o01i->f01b, rhs_reversal) that XLA:CPU
# runs as a naive loop nest, after a naive reverse of the whole 3x3x512x512
# kernel: 14 % of the thunk time of the 256 px encoder's forward pass in a
# profile, 0.75 -> 0.68 s a batch-1 forward (interleaved A/B). The output has
# a few positions at most, so im2col is cheap and the conv is one small
# matmul, forward and backward.
def _input_within_kernel(x_shape, w_shape) -> bool:
  return x_shape[1] <= w_shape[0] and x_shape[2] <= w_shape[1]


def _conv2d_patches_dot(x, w, stride, padding, precision=None):
  kh, kw, cin, cout = w.shape
  p = conv_patches(x, (kh, kw), stride, padding)
  return jax.lax.dot_general(p, w.reshape(kh * kw * cin, cout),
                             (((3,), (0,)), ((), ())), precision=precision)


# XLA:CPU computes a conv's kernel gradient as a conv whose window is the
# whole output-gradient map, at 30-60 GFLOP/s on this project's CPU (a third
# of its forward speed): the encoder's backward pass spent most of a training
# step there. _kernel_grad writes it as one matmul per kernel tap instead.
# The input gradient and the forward stay XLA's own.
# benchmarks/convs.py and benchmarks/train_step.py measure it.
def _matmul_kernel_grad_pays(x_shape, w_shape, stride, padding) -> bool:
  """Where the matmul kernel gradient beat XLA's in benchmarks/convs.py:
  at least 32 input channels (a [Cout, M] @ [M, 3] product starves the
  matmul) and M * Cin >= 2^19 for M output positions (below that, e.g. a
  16x16x512 or one 32x32x256 map, XLA's conv was faster)."""
  n, h, w, cin = x_shape
  kh, kw = w_shape[:2]
  ho = (h + sum(padding[0]) - kh) // stride + 1
  wo = (w + sum(padding[1]) - kw) // stride + 1
  return cin >= 32 and n * ho * wo * cin >= 2 ** 19


def _conv2d_dot_wgrad(x, w, stride, padding, precision):
  """The conv, differentiated by matmul kernel gradient (and, for stride >
  1, the polyphase input gradient)."""
  return _conv2d_custom(x, w, stride, padding, precision, True, stride > 1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv2d_custom(x, w, stride, padding, precision, matmul_wgrad,
                   phase_dgrad):
  del matmul_wgrad, phase_dgrad
  return _conv2d_lax(x, w, stride, padding, precision=precision)


def _conv2d_custom_fwd(x, w, stride, padding, precision, matmul_wgrad,
                       phase_dgrad):
  del matmul_wgrad, phase_dgrad
  return _conv2d_lax(x, w, stride, padding, precision=precision), (x, w)


def _conv2d_custom_bwd(stride, padding, precision, matmul_wgrad, phase_dgrad,
                       res, dy):
  x, w = res
  conv = lambda x, w: _conv2d_lax(x, w, stride, padding, precision=precision)
  if phase_dgrad:
    dx = _input_grad_phases(dy, w, x.shape, stride, padding, precision)
  else:
    dx = jax.vjp(lambda x: conv(x, w), x)[1](dy)[0]
  if matmul_wgrad:
    dw = _kernel_grad(x, dy, w.shape[:2], stride, padding, precision)
  else:
    dw = jax.vjp(lambda w: conv(x, w), w)[1](dy)[0]
  return dx, dw.astype(w.dtype)


_conv2d_custom.defvjp(_conv2d_custom_fwd, _conv2d_custom_bwd)


# XLA:CPU computes a strided conv's input gradient as a conv over the
# zero-dilated output gradient ("convolution-base-dilated"), which it runs
# slowly: ~8 % of the thunk time of the 256 px training step (stage 0's
# 256 px stride-2 conv, the heads' 4x4 ones); the step went 8.9 -> 8.1 s
# with this (interleaved A/B, same first loss).
# _input_grad_phases gives each of the s*s phases of dx its own small
# stride-1 conv of dy, with only the taps that land on that phase.
def _phase_taps(size, k, s, pad_lo, r):
  """Along one axis, for input positions i = s*t + r: the taps a that reach
  them (ordered by the dy offset they read, ascending), the first offset,
  and the number of positions t. dy[m] met x[s*m + a - pad_lo]."""
  taps = sorted((a for a in range(k) if (r + pad_lo - a) % s == 0),
                key=lambda a: (r + pad_lo - a) // s)
  count = len(range(r, size, s))
  first = (r + pad_lo - taps[0]) // s if taps else 0
  return taps, first, count


def _input_grad_phases(dy, w, x_shape, stride, padding, precision=None):
  """d(sum(conv(x, w) * dy)) / dx for a strided conv, by phases.

  dx[s*t + r] = sum_j dy[t + first + j] w[taps[j]]^T along each axis: a
  valid stride-1 correlation of dy, padded (or cropped) by -first in front
  and to the phase's length behind, with the kernel of that phase's taps.
  The phases interleave into dx (a phase no tap reaches is zero).
  """
  n, h, wd, cin = x_shape
  _, ho, wo, cout = dy.shape
  kh, kw = w.shape[:2]
  s = stride
  th, tw = -(-h // s), -(-wd // s)
  rows = []
  for rh in range(s):
    taps_h, first_h, count_h = _phase_taps(h, kh, s, padding[0][0], rh)
    row = []
    for rw in range(s):
      taps_w, first_w, count_w = _phase_taps(wd, kw, s, padding[1][0], rw)
      if not (taps_h and taps_w and count_h and count_w):
        row.append(jnp.zeros((n, th, tw, cin), dy.dtype))
        continue
      lh, lw = len(taps_h), len(taps_w)
      d = jax.lax.pad(dy, jnp.zeros((), dy.dtype), (
          (0, 0, 0), (-first_h, count_h + first_h + lh - 1 - ho, 0),
          (-first_w, count_w + first_w + lw - 1 - wo, 0), (0, 0, 0)))
      k = jnp.stack([jnp.stack([w[a, b] for b in taps_w]) for a in taps_h])
      ph = conv2d(d, k.transpose(0, 1, 3, 2).astype(dy.dtype),
                  precision=precision)
      row.append(jnp.pad(ph, ((0, 0), (0, th - count_h), (0, tw - count_w),
                              (0, 0))))
    rows.append(jnp.stack(row, 3))                 # [N, th, tw, s, C]
  dx = jnp.stack(rows, 2).reshape(n, th * s, tw * s, cin)
  return dx[:, :h, :wd]


def _kernel_grad(x, dy, kernel_hw, stride, padding, precision=None):
  """d(sum(conv(x, w) * dy)) / dw, [kh, kw, Cin, Cout], by matmuls.

  Tap (a, b) of the kernel met the padded input at rows s*i + a, columns
  s*j + b: phase (a % s, b % s) of the input, shifted by (a // s, b // s).
  On one grid of [N, Hq, Wq] phase positions, with dy zero-padded onto it,
  that shift is a fixed offset into the flattened grid, so each tap is a
  contiguous slice of one phase times dy: [Cout, M] @ [M, Cin]. Valid
  positions never wrap into the next row or image, and dy is zero where
  shifted rows would.
  """
  kh, kw = kernel_hw
  n, _, _, cin = x.shape
  _, ho, wo, cout = dy.shape
  s = stride
  xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  hp, wp = xp.shape[1:3]
  hq, wq = -(-hp // s), -(-wp // s)
  xp = jnp.pad(xp, ((0, 0), (0, hq * s - hp), (0, wq * s - wp), (0, 0)))
  m = n * hq * wq
  phases = {(p, q): xp[:, p::s, q::s].reshape(m, cin)
            for p in range(min(s, kh)) for q in range(min(s, kw))}
  dy = jnp.pad(dy, ((0, 0), (0, hq - ho), (0, wq - wo), (0, 0)))
  length = m - ((kh - 1) // s) * wq - (kw - 1) // s
  dy = dy.reshape(m, cout)[:length]
  taps = []
  for a in range(kh):
    for b in range(kw):
      off = (a // s) * wq + b // s
      xs = jax.lax.slice_in_dim(phases[(a % s, b % s)], off, off + length)
      taps.append(jax.lax.dot_general(dy, xs, (((0,), (0,)), ((), ())),
                                      precision=precision))  # [Cout, Cin]
  return jnp.stack(taps).reshape(kh, kw, cout, cin).transpose(0, 1, 3, 2)


def conv_patches(x, kernel_size, stride: int = 1, padding=0):
  """im2col: [N, Ho, Wo, kh*kw*C] with features ordered (kh, kw, C).

  ``patches @ w.reshape(kh*kw*C, Cout)`` for an HWIO kernel w equals
  ``conv2d(x, w, stride, padding)``. ``kernel_size``: k or (kh, kw);
  ``padding``: int or ((top, bottom), (left, right)).
  """
  n, h, w, c = x.shape
  kh, kw = ((kernel_size, kernel_size) if isinstance(kernel_size, int)
            else kernel_size)
  if isinstance(padding, int):
    padding = ((padding, padding), (padding, padding))
  s = stride
  xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  ho = (xp.shape[1] - kh) // s + 1
  wo = (xp.shape[2] - kw) // s + 1
  taps = [jax.lax.slice(xp, (0, a, b, 0),
                        (n, a + s * (ho - 1) + 1, b + s * (wo - 1) + 1, c),
                        (1, s, s, 1))
          for a in range(kh) for b in range(kw)]
  return jnp.concatenate(taps, axis=-1)


def bias_act(x, b=None, act: str = "lrelu", alpha: float = 0.2,
             gain: Optional[float] = None, clamp: Optional[float] = None):
  """x + b, activation, gain, clamp: NVIDIA's bias_act on the last axis."""
  if b is not None:
    x = x + b.astype(x.dtype)
  if act == "lrelu":
    x = jnp.where(x >= 0, x, x * alpha)
    gain = SQRT2 if gain is None else gain
  elif act == "linear":
    gain = 1.0 if gain is None else gain
  else:
    raise ValueError(f"unknown activation {act!r}")
  if gain != 1:
    x = x * gain
  if clamp is not None and clamp >= 0:
    x = jnp.clip(x, -clamp, clamp)
  return x


def normal_init(std: float = 1.0) -> Callable:
  def init(key, shape, dtype=jnp.float32):
    return jax.random.normal(key, shape, dtype) * std
  return init


def constant_init(value: float) -> Callable:
  def init(key, shape, dtype=jnp.float32):
    del key
    return jnp.full(shape, value, dtype)
  return init


def torch_uniform_init(fan_in: int) -> Callable:
  """PyTorch's default conv/linear init: U(+-1/sqrt(fan_in)) for weight and bias.

  (kaiming_uniform with a = sqrt(5) gives exactly this bound for the weight.)
  """
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


class EqualDense(nn.Module):
  """Dense layer with equalised learning rate (StyleGAN, pSp EqualLinear).

  Stored weight [in, out] ~ N(0, 1 / lr_mul); runtime weight
  W * lr_mul / sqrt(in); runtime bias b * lr_mul. Optional lrelu*sqrt(2).
  """
  features: int
  lr_mul: float = 1.0
  bias_init: float = 0.0
  activation: str = "linear"
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1]
    w = self.param("weight", normal_init(1.0 / self.lr_mul),
                   (fan_in, self.features))
    x = x @ (w * (self.lr_mul / math.sqrt(fan_in))).astype(x.dtype)
    b = None
    if self.use_bias:
      b = self.param("bias", constant_init(self.bias_init / self.lr_mul),
                     (self.features,)) * self.lr_mul
    return bias_act(x, b, act=self.activation)


class TorchConv(nn.Module):
  """nn.Conv2d with PyTorch's default initialisation and explicit padding.

  ``dtype``: compute dtype of the conv's operands (the kernel parameter
  stays float32); the output is cast back to the input's dtype, so what
  follows (bias, BatchNorm, activations) runs at full precision. The
  patches path accumulates in float32 (preferred_element_type).
  """
  features: int
  kernel_size: int = 3
  stride: int = 1
  padding: int = 0
  use_bias: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, patches=None):
    """x [N, H, W, Cin] -> [N, Ho, Wo, features].

    ``patches``: optional ``conv_patches(x, kernel_size, stride, padding)``,
    computed once by a caller whose several convs read the same x; the conv
    is then one matmul on them (same result up to float32 rounding).
    """
    cin = x.shape[-1]
    k = self.kernel_size
    init = torch_uniform_init(cin * k * k)
    w = self.param("kernel", init, (k, k, cin, self.features))
    if patches is not None and patches.shape[-1] != k * k * cin:
      raise ValueError(f"patches of {patches.shape[-1]} features for a "
                       f"{k}x{k} conv over {cin} channels")
    cd = jnp.dtype(self.dtype)
    if patches is None:
      y = conv2d(x.astype(cd), w.astype(cd), stride=self.stride,
                 padding=self.padding)
    else:
      y = jax.lax.dot_general(
          patches.astype(cd), w.reshape(k * k * cin, self.features).astype(cd),
          (((3,), (0,)), ((), ())), preferred_element_type=jnp.float32)
    y = y.astype(x.dtype)
    if self.use_bias:
      y = y + self.param("bias", init, (self.features,)).astype(y.dtype)
    return y


class TorchDense(nn.Module):
  """nn.Linear with PyTorch's default initialisation (kernel [in, out])."""
  features: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    init = torch_uniform_init(x.shape[-1])
    w = self.param("kernel", init, (x.shape[-1], self.features))
    y = x @ w.astype(x.dtype)
    if self.use_bias:
      y = y + self.param("bias", init, (self.features,)).astype(y.dtype)
    return y


class PReLU(nn.Module):
  """Per-channel PReLU (torch.nn.PReLU(C)), slope initialised to 0.25."""

  @nn.compact
  def __call__(self, x):
    a = self.param("weight", constant_init(0.25), (x.shape[-1],))
    return jnp.where(x >= 0, x, x * a.astype(x.dtype))


class TorchBatchNorm(nn.Module):
  """BatchNorm with PyTorch semantics (nn.BatchNorm1d/2d), channels last.

  Train mode normalises with the biased batch variance computed in two passes
  (centred) and updates running_mean / running_var with momentum 0.1 using
  the UNBIASED variance n / (n - 1). Statistics are reduced over every axis
  but the last; under a global-view jit over a sharded batch they therefore
  cover the global batch (SyncBN). Under pmap pass ``axis_name`` to reduce
  across devices too. Running statistics live in the "batch_stats" collection.
  """
  momentum: float = 0.1
  epsilon: float = 1e-5
  use_scale_bias: bool = True
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (c,), jnp.float32)
    ra_var = self.variable("batch_stats", "var", jnp.ones, (c,), jnp.float32)
    axes = tuple(range(x.ndim - 1))
    if train:
      xf = x.astype(jnp.float32)
      n = math.prod(x.shape[:-1])
      mean = jnp.mean(xf, axes)
      if self.axis_name is not None:
        mean = jax.lax.pmean(mean, self.axis_name)
        n = n * jax.lax.psum(1, self.axis_name)
      var = jnp.mean(jnp.square(xf - mean), axes)
      if self.axis_name is not None:
        var = jax.lax.pmean(var, self.axis_name)
      if not self.is_initializing():
        m = self.momentum
        unbiased = var * (n / jnp.maximum(n - 1, 1))
        ra_mean.value = (1 - m) * ra_mean.value + m * jax.lax.stop_gradient(mean)
        ra_var.value = (1 - m) * ra_var.value + m * jax.lax.stop_gradient(
            unbiased)
    else:
      mean, var = ra_mean.value, ra_var.value
    y = (x - mean.astype(x.dtype)) * jax.lax.rsqrt(
        var.astype(x.dtype) + self.epsilon)
    if self.use_scale_bias:
      y = y * self.param("scale", nn.initializers.ones, (c,)).astype(x.dtype)
      y = y + self.param("bias", nn.initializers.zeros, (c,)).astype(x.dtype)
    return y
