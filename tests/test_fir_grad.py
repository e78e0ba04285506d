"""fir._fir_1d's custom gradient (full correlation with reversed taps over
the zero-inserted gradient) against the FIR written as an explicit matrix,
first and second order, for the up/down factors and lengths the models use
and odd ones (lengths not a multiple of down, zero taps)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from padinv_jax.models import fir


def _matrix(taps, size, down):
  out = (size - len(taps)) // down + 1
  a = np.zeros((out, size))
  for o in range(out):
    for k, t in enumerate(taps):
      a[o, k + down * o] += t
  return a


@pytest.mark.parametrize("length,down,size,axis", [
    (4, 1, 9, 1), (4, 2, 10, 2), (4, 2, 11, 1), (3, 3, 13, 2), (1, 1, 5, 1),
    (5, 2, 6, 2)])
def test_fir_gradients_match_the_matrix(length, down, size, axis):
  rng = np.random.default_rng(length * 100 + down * 10 + size)
  taps = rng.standard_normal(length)
  if length > 2:
    taps[1] = 0.0  # a skipped tap
  shape = [2, 7, 7, 3]
  shape[axis] = size
  x = rng.standard_normal(shape)
  a = _matrix(taps, size, down)
  f = lambda x: fir._fir_1d(x, taps, axis, down)
  y, vjp = jax.vjp(f, jnp.asarray(x, jnp.float32))
  ref_y = np.moveaxis(np.tensordot(a, np.moveaxis(x, axis, 0), 1), 0, axis)
  np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-5)
  dy = rng.standard_normal(y.shape)
  ref_dx = np.moveaxis(np.tensordot(a.T, np.moveaxis(dy, axis, 0), 1), 0,
                       axis)
  np.testing.assert_allclose(vjp(jnp.asarray(dy, jnp.float32))[0], ref_dx,
                             rtol=1e-5, atol=1e-5)
  # Second order (R1 differentiates a gradient through the FIR again):
  # d/dx sum(grad(sum(sin(f(x))))^2) against the same with the matrix.
  def r1(fir, x):
    return jnp.sum(jax.grad(lambda x: jnp.sum(jnp.sin(fir(x))))(x) ** 2)
  am = jnp.asarray(a, jnp.float64 if jax.config.jax_enable_x64
                   else jnp.float32)
  by_matrix = lambda x: jnp.moveaxis(jnp.tensordot(
      am, jnp.moveaxis(x, axis, 0), 1), 0, axis)
  xj = jnp.asarray(x, jnp.float32)
  np.testing.assert_allclose(jax.grad(lambda x: r1(f, x))(xj),
                             jax.grad(lambda x: r1(by_matrix, x))(xj),
                             rtol=1e-4, atol=1e-4)
