"""NVIDIA's FIR resampling (upfirdn2d) with the original's semantics (NHWC).

Separable filters (NVIDIA's are) run as two passes of shifted, scaled
slices, with a custom gradient for each pass (see _fir_1d_custom). Re-exported
by ops (ops.upfirdn2d, ops.fir_filter).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def fir_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> np.ndarray:
  """The normalised separable 2D FIR filter outer(taps) / sum^2."""
  t = np.asarray(taps, np.float64)
  f = np.outer(t, t)
  return (f / f.sum()).astype(np.float32)


def upfirdn2d(x, f, up: int = 1, down: int = 1,
              pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0):
  """NVIDIA's upfirdn2d: zero-insert up, pad, FIR filter, keep every down-th.

  Args:
    x: [N, H, W, C].
    f: [fh, fw] 2D filter (numpy or jax array).
    up: up-sampling factor (zeros inserted after each sample).
    down: down-sampling factor.
    pad: (x0, x1, y0, y1) padding, negative values crop, as in the original.
    gain: multiplies the filter (the original's gain for a 2D filter).

  Returns:
    [N, H', W', C] with H' = (H * up + y0 + y1 - fh) // down + 1.
  """
  n, h, w, c = x.shape
  fh, fw = np.shape(f)
  x0, x1, y0, y1 = pad
  if up > 1:
    x = x.reshape(n, h, 1, w, 1, c)
    x = jnp.pad(x, ((0, 0), (0, 0), (0, up - 1), (0, 0), (0, up - 1), (0, 0)))
    x = x.reshape(n, h * up, w * up, c)
  x = jnp.pad(x, ((0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0)),
                  (0, 0)))
  x = x[:, max(-y0, 0): x.shape[1] - max(-y1, 0),
        max(-x0, 0): x.shape[2] - max(-x1, 0)]
  taps = _separable_taps(f)
  if taps is not None:
    # Separable filter (NVIDIA's are): two passes of shifted, scaled slices
    # that XLA fuses into elementwise loops. XLA:CPU's depthwise convolution
    # (feature_group_count=C) is an order of magnitude slower at 1024 px.
    col, row = taps
    x = _fir_1d(x, col[::-1] * gain, 1, down)  # flipped: the original convolves
    return _fir_1d(x, row[::-1], 2, down)
  # The original convolves (flips the filter); conv2d here correlates.
  k = jnp.asarray(f, x.dtype)[::-1, ::-1] * gain
  k = jnp.tile(k[:, :, None, None], (1, 1, 1, c))  # depthwise [fh, fw, 1, C]
  x = jax.lax.conv_general_dilated(  # depthwise; ops.conv2d's plain path
      x, k, window_strides=(1, 1), padding=((0, 0), (0, 0)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)
  if down > 1:
    x = x[:, ::down, ::down]
  return x


def _separable_taps(f):
  """(col, row) with outer(col, row) == f for a concrete rank-1 filter."""
  if isinstance(f, jax.core.Tracer):
    return None
  tol = 1e-12 if np.asarray(f).dtype == np.float64 else 1e-7
  f = np.asarray(f, np.float64)
  i, j = np.unravel_index(np.argmax(np.abs(f)), f.shape)
  if f[i, j] == 0:
    return None
  col, row = f[:, j], f[i, :] / f[i, j]
  if np.abs(np.outer(col, row) - f).max() > tol * np.abs(f).max():
    return None
  return col, row


def _fir_1d(x, taps, axis: int, down: int):
  """sum_k taps[k] x[k + down * o] along ``axis`` (a valid correlation)."""
  return _fir_1d_custom(x, tuple(float(t) for t in taps), axis, down)


def _fir_1d_slices(x, taps, axis, down):
  out = (x.shape[axis] - len(taps)) // down + 1
  y = None
  for k, t in enumerate(taps):
    if t == 0:
      continue
    s = jax.lax.slice_in_dim(x, k, k + down * (out - 1) + 1, down, axis)
    s = s * jnp.asarray(t, x.dtype)
    y = s if y is None else y + s
  return y


# The transpose JAX derives for the shifted slices is a sum of pads that
# XLA:CPU fuses into one slow loop (~0.5 GB/s; 3.5 % of the 256 px training
# step's thunk time, in the generator's last up-sampling layer). The
# transpose of a valid correlation is the full correlation with the taps
# reversed: the same shifted slices over the zero-inserted, zero-padded
# gradient.
@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _fir_1d_custom(x, taps, axis, down):
  return _fir_1d_slices(x, taps, axis, down)


def _fir_1d_fwd(x, taps, axis, down):
  return _fir_1d_slices(x, taps, axis, down), x.shape[axis]


def _fir_1d_bwd(taps, axis, down, size, dy):
  length = len(taps)
  cfg = [(0, 0, 0)] * dy.ndim
  cfg[axis] = (length - 1, length - 1, down - 1)
  d = jax.lax.pad(dy, jnp.zeros((), dy.dtype), cfg)
  dx = _fir_1d_custom(d, taps[::-1], axis, 1)
  cfg = [(0, 0, 0)] * dy.ndim
  cfg[axis] = (0, size - dx.shape[axis], 0)
  return (jax.lax.pad(dx, jnp.zeros((), dx.dtype), cfg),)


_fir_1d_custom.defvjp(_fir_1d_fwd, _fir_1d_bwd)
