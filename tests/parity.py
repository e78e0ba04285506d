"""Shared by the tests (and benchmarks): the parity tolerance of DESIGN
section 6 and the structured test images fed to both frameworks."""

import numpy as np


def assert_close(got, want, what):
  """max|got - want| <= 1e-4 * max(1, max|want|), in float64."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape, (what, got.shape, want.shape)
  err = np.abs(got - want).max()
  tol = 1e-4 * max(1.0, np.abs(want).max())
  assert err <= tol, f"{what}: max|diff| {err:.3g} > {tol:.3g}"


def structured_images(n: int, size: int = 256, seed: int = 0) -> np.ndarray:
  """[n, size, size, 3] float32 in [-1, 1]: smooth structure plus noise,
  so no layer sees a spatially constant input."""
  rng = np.random.default_rng(seed)
  yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size),
                       indexing="ij")
  base = np.stack([np.sin(3 * xx + yy), np.cos(2 * yy - xx), xx * yy], -1)
  x = 0.6 * base[None] + 0.4 * rng.uniform(-1, 1, (n, size, size, 3))
  return np.clip(x, -1, 1).astype(np.float32)
