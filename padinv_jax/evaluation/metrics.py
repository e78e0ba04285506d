"""Per-image reconstruction metrics and the evaluation downsampling, in jnp.

Everything here is pure and jit-able; images are [N, H, W, C] float arrays in
[-1, 1] (the generator's nominal range; outputs are not clamped, as in the
original's evaluation), and every metric returns one value per image, [N].

Definitions (DESIGN.md section 9):
  MSE   mean over H, W, C of (a - b)^2, in [-1, 1] units (the original's).
  PSNR  10 log10(4 / MSE): the peak-to-peak range of [-1, 1] is 2.
  SSIM  Wang et al. 2004 as scikit-image computes it with
        ``structural_similarity(gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, channel_axis=-1, data_range=2)``:
        11 x 11 Gaussian window (sigma 1.5, truncated at 3.5 sigma),
        population (co)variances, K1 = 0.01, K2 = 0.03, mean of the SSIM map
        over the pixels at least 5 px from the border, averaged over
        channels.

``downsample`` is the one place that reduces generator outputs above 256 px
to 256 px: "avgpool" (the training losses' k x k average pool) or "nearest"
(pixel (k i, k j), what the original's evaluator did).
"""

from __future__ import annotations

from typing import Optional

import chex
import jax.numpy as jnp
import numpy as np

DATA_RANGE = 2.0  # images live in [-1, 1]
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # scikit-image's value for gaussian_weights=True
SSIM_K1 = 0.01
SSIM_K2 = 0.03

DOWNSAMPLE_METHODS = ("avgpool", "nearest")


def _check_pair(a, b, name):
  if a.shape != b.shape:
    raise ValueError(f"{name}: both image batches must have the same shape, "
                     f"got {tuple(a.shape)} and {tuple(b.shape)}")
  chex.assert_rank(a, 4)


def mse(a, b):
  """Per-image mean squared error in [-1, 1] units.

  Args:
    a: [N, H, W, C] images in [-1, 1].
    b: same shape as ``a``.

  Returns:
    [N] float32.
  """
  _check_pair(a, b, "mse")
  d = a.astype(jnp.float32) - b.astype(jnp.float32)
  return jnp.mean(jnp.square(d), axis=(1, 2, 3))


def psnr(a, b):
  """Per-image PSNR in dB for [-1, 1] images: 10 log10(4 / MSE).

  Identical images give +inf (MSE 0), as the formula says.

  Args:
    a: [N, H, W, C] images in [-1, 1].
    b: same shape as ``a``.

  Returns:
    [N] float32.
  """
  return 10.0 * jnp.log10(DATA_RANGE ** 2 / mse(a, b))


def gaussian_window(sigma: float = SSIM_SIGMA,
                    truncate: float = SSIM_TRUNCATE) -> np.ndarray:
  """The normalised 1-D Gaussian taps scipy.ndimage uses (radius int(t s + .5))."""
  radius = int(truncate * sigma + 0.5)
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  g = np.exp(-0.5 * (x / sigma) ** 2)
  return g / g.sum()


def _filter_valid(x, taps):
  """Separable 'valid' Gaussian filter over H and W of [N, H, W, C].

  Written as a sum of shifted slices rather than a conv so the float32
  arithmetic does not depend on the backend's matmul/conv precision.
  """
  k = len(taps)
  h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
  y = sum(float(t) * x[:, i:i + h] for i, t in enumerate(taps))
  return sum(float(t) * y[:, :, j:j + w] for j, t in enumerate(taps))


def ssim(a, b, *, sigma: float = SSIM_SIGMA):
  """Per-image SSIM of [-1, 1] images, matching scikit-image (see module doc).

  scikit-image filters the whole image with reflect padding and then drops a
  border of the filter's radius before averaging; the kept pixels never see
  the padding, so a 'valid' filter gives the same numbers.

  Args:
    a: [N, H, W, C] images in [-1, 1]; H, W >= 11 (the window size).
    b: same shape as ``a``.
    sigma: Gaussian window sigma (1.5 in Wang et al. and in the paper).

  Returns:
    [N] float32: the mean SSIM map, averaged over channels.
  """
  _check_pair(a, b, "ssim")
  taps = gaussian_window(sigma)
  if min(a.shape[1], a.shape[2]) < len(taps):
    raise ValueError(f"ssim: images must be at least {len(taps)} x "
                     f"{len(taps)} px (the Gaussian window), got "
                     f"{a.shape[1]} x {a.shape[2]}")
  x = a.astype(jnp.float32)
  y = b.astype(jnp.float32)
  ux, uy = _filter_valid(x, taps), _filter_valid(y, taps)
  uxx = _filter_valid(x * x, taps)
  uyy = _filter_valid(y * y, taps)
  uxy = _filter_valid(x * y, taps)
  # Population (co)variances: use_sample_covariance=False.
  vx, vy, vxy = uxx - ux * ux, uyy - uy * uy, uxy - ux * uy
  c1 = (SSIM_K1 * DATA_RANGE) ** 2
  c2 = (SSIM_K2 * DATA_RANGE) ** 2
  s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / (
      (ux * ux + uy * uy + c1) * (vx + vy + c2))
  # Mean over pixels per channel, then over channels (channel_axis=-1).
  return jnp.mean(jnp.mean(s, axis=(1, 2)), axis=-1)


def downsample(images, size: int = 256, method: Optional[str] = "avgpool"):
  """Reduce [N, R, R, C] generator outputs to [N, size, size, C].

  Outputs at or below ``size`` are returned unchanged.

  Args:
    images: [N, R, R, C] with R a multiple of ``size`` (or R <= size).
    size: target side (256: the encoder's input size).
    method: "avgpool" (k x k mean, k = R / size: the training losses),
      "nearest" (pixel (k i, k j): the original's evaluation), or None (no
      reduction).

  Returns:
    [N, min(R, size), min(R, size), C], same dtype.
  """
  chex.assert_rank(images, 4)
  if method is None:
    return images
  if method not in DOWNSAMPLE_METHODS:
    raise ValueError(f"downsample must be one of {DOWNSAMPLE_METHODS} or None,"
                     f" got {method!r}")
  n, h, w, c = images.shape
  if h <= size and w <= size:
    return images
  if h != w or h % size:
    raise ValueError(f"downsample: expected square outputs whose side is a "
                     f"multiple of {size}, got {h} x {w}")
  k = h // size
  if method == "nearest":
    return images[:, ::k, ::k]
  return jnp.mean(images.reshape(n, size, k, size, k, c), axis=(2, 4))


def match_resolution(x_hat, x, method: str = "avgpool"):
  """Bring G's output and the 256 px input to one resolution for the losses.

  Outputs above 256 px are reduced to 256 (average pool by default, as the
  original's AdaptiveAvgPool2d; "nearest" as its evaluator). Generators
  below 256 px (tiny test/demo models only: the original has none) compare
  at the generator's resolution, the input average-pooled down.
  """
  r, s = x_hat.shape[1], x.shape[1]
  if r > s:
    x_hat = downsample(x_hat, s, method)
  elif r < s:
    x = downsample(x, r, "avgpool")
  return x_hat, x


def mean_ci95(values) -> dict:
  """{"mean", "ci95"} of per-image values: the mean and 1.96 standard errors
  (ddof 1; None for a single value), in float64 on the host."""
  v = np.asarray(values, np.float64).reshape(-1)
  ci = float(1.96 * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None
  return {"mean": float(v.mean()), "ci95": ci}
