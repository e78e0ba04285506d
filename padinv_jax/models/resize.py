"""Align-corners bilinear and bicubic resizes with PyTorch's semantics, NHWC.

torch.nn.functional.interpolate(..., align_corners=True) maps output index
i to the source coordinate x = i * (in - 1) / (out - 1) (0 when out == 1).
Bilinear blends x0 = floor(x) and min(x0 + 1, in - 1). Bicubic uses Keys'
cubic convolution with a = -0.75 on the four taps floor(x) - 1 .. floor(x) + 2,
each index CLAMPED to [0, in - 1] (so an edge sample is repeated, not
reflected or dropped). jax.image.resize uses half-pixel centres and
renormalised edge weights, which differ from both.

Both resizes are separable: each axis is a fixed [out, in] matrix built in
numpy (source coordinates in float32, as PyTorch computes them for float32
tensors) and applied with full-precision einsums, which also keeps them cheap
to differentiate.
"""

from __future__ import annotations

from typing import Sequence, Union

import chex
import jax
import jax.numpy as jnp
import numpy as np

Size = Union[int, Sequence[int]]


def _source_coords(n_in: int, n_out: int) -> np.ndarray:
  # float32 like PyTorch's CPU kernels for float32 input (opmath is float).
  scale = np.float32((n_in - 1) / (n_out - 1)) if n_out > 1 else np.float32(0)
  return np.arange(n_out, dtype=np.float32) * scale


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] linear-interpolation weights, align_corners=True."""
  x = _source_coords(n_in, n_out)
  x0 = np.floor(x).astype(np.int64)
  x0 = np.minimum(x0, n_in - 1)
  t = x - x0.astype(np.float32)
  x1 = np.minimum(x0 + 1, n_in - 1)
  m = np.zeros((n_out, n_in), np.float32)
  rows = np.arange(n_out)
  np.add.at(m, (rows, x0), 1 - t)
  np.add.at(m, (rows, x1), t)
  return m


def _cubic_weights(t: np.ndarray, a: float) -> np.ndarray:
  """Keys' kernel at distances t + 1, t, 1 - t, 2 - t -> [n, 4]."""
  a = np.float32(a)

  def near(d):  # |d| <= 1
    return ((a + 2) * d - (a + 3)) * d * d + 1

  def far(d):  # 1 < |d| < 2
    return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

  return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


def bicubic_matrix(n_in: int, n_out: int, a: float = -0.75) -> np.ndarray:
  """[n_out, n_in] bicubic weights, align_corners=True, clamped taps."""
  x = _source_coords(n_in, n_out)
  x0 = np.floor(x).astype(np.int64)
  t = (x - x0.astype(np.float32)).astype(np.float32)
  w = _cubic_weights(t, a)  # [n_out, 4]
  m = np.zeros((n_out, n_in), np.float32)
  rows = np.arange(n_out)
  for k in range(4):
    idx = np.clip(x0 - 1 + k, 0, n_in - 1)
    np.add.at(m, (rows, idx), w[:, k])
  return m


def _as_hw(size: Size) -> tuple[int, int]:
  if isinstance(size, int):
    return size, size
  h, w = size
  return int(h), int(w)


def _apply(x, mh: np.ndarray, mw: np.ndarray):
  hp = jax.lax.Precision.HIGHEST
  y = jnp.einsum("oh,nhwc->nowc", jnp.asarray(mh, x.dtype), x, precision=hp)
  return jnp.einsum("pw,nowc->nopc", jnp.asarray(mw, x.dtype), y, precision=hp)


def resize_bilinear(x, size: Size):
  """F.interpolate(mode='bilinear', align_corners=True) on NHWC input.

  Args:
    x: [N, H, W, C].
    size: output side (int) or (height, width).

  Returns:
    [N, height, width, C].
  """
  chex.assert_rank(x, 4)
  h, w = _as_hw(size)
  return _apply(x, bilinear_matrix(x.shape[1], h),
                bilinear_matrix(x.shape[2], w))


def resize_bicubic(x, size: Size, a: float = -0.75):
  """F.interpolate(mode='bicubic', align_corners=True) on NHWC input.

  Args:
    x: [N, H, W, C].
    size: output side (int) or (height, width).
    a: the cubic kernel's parameter (PyTorch: -0.75).

  Returns:
    [N, height, width, C]. Values may overshoot the input's range (cubic).
  """
  chex.assert_rank(x, 4)
  h, w = _as_hw(size)
  return _apply(x, bicubic_matrix(x.shape[1], h, a),
                bicubic_matrix(x.shape[2], w, a))
