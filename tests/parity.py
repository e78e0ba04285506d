"""The parity tolerance of DESIGN section 6, shared by the tests."""

import numpy as np


def assert_close(got, want, what):
  """max|got - want| <= 1e-4 * max(1, max|want|), in float64."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape, (what, got.shape, want.shape)
  err = np.abs(got - want).max()
  tol = 1e-4 * max(1.0, np.abs(want).max())
  assert err <= tol, f"{what}: max|diff| {err:.3g} > {tol:.3g}"
