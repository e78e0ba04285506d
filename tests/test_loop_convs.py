"""loop_convs.canonical_convs: the same numbers, every conv in canonical order.

XLA:CPU canonicalises (and so runs with Eigen) only the entry computation's
convolutions; a gradient taken inside a lax.scan body kept its backward
convs in their odd orders and ran them as naive loops. The wrapper must
give what XLA's own (top-level, canonicalised) convs give, for the conv
kinds the models use (strides, padding, groups, dilations, NCHW), and leave
no non-canonical conv in a compiled loop.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from padinv_jax.models import loop_convs
from padinv_jax.models import ops

CANONICAL = "b01f_01io->b01f"

CASES = [  # (name, x shape, w shape, conv kwargs)
    ("stride1", (2, 9, 9, 6), (3, 3, 6, 5), dict(padding=((1, 1), (1, 1)))),
    ("stride2", (2, 9, 10, 4), (3, 3, 4, 6),
     dict(window_strides=(2, 2), padding=((1, 1), (0, 1)))),
    ("groups", (2, 8, 8, 6), (3, 3, 3, 4),
     dict(padding=((1, 1), (1, 1)), feature_group_count=2)),
    ("depthwise", (1, 8, 8, 4), (4, 4, 1, 4),
     dict(padding=((0, 0), (0, 0)), feature_group_count=4)),
    ("lhs_dilation", (2, 5, 5, 3), (3, 3, 3, 4),
     dict(padding=((2, 2), (2, 2)), lhs_dilation=(2, 2))),
    ("rhs_dilation", (1, 9, 9, 3), (3, 3, 3, 2),
     dict(padding=((2, 2), (2, 2)), rhs_dilation=(2, 2))),
]


def _conv(x, w, kw, dn=("NHWC", "HWIO", "NHWC")):
  kw = dict(kw)
  return jax.lax.conv_general_dilated(
      x, w, kw.pop("window_strides", (1, 1)), kw.pop("padding"),
      dimension_numbers=dn, precision="highest", **kw)


def _data(xs, ws, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.standard_normal(xs), jnp.float32),
          jnp.asarray(rng.standard_normal(ws), jnp.float32))


@pytest.mark.parametrize("name,xs,ws,kw", CASES, ids=[c[0] for c in CASES])
def test_gradients_match_xla(name, xs, ws, kw):
  x, w = _data(xs, ws)

  def loss(x, w):
    y = _conv(x, w, kw)
    return jnp.sum(jnp.sin(y) * y)

  grad = jax.value_and_grad(loss, argnums=(0, 1))
  want = jax.jit(grad)(x, w)
  got = jax.jit(loop_convs.canonical_convs(grad))(x, w)
  for g, e in zip(jax.tree_util.tree_leaves(got),
                  jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5 * np.abs(e).max())


def test_nchw_forward_is_transposed_and_matches():
  x, w = _data((2, 3, 7, 7), (4, 3, 3, 3))
  kw = dict(padding=((1, 1), (1, 1)))
  f = lambda x, w: _conv(x, w, kw, ("NCHW", "OIHW", "NCHW"))
  want = jax.jit(f)(x, w)
  wrapped = jax.jit(loop_convs.canonical_convs(f))
  np.testing.assert_allclose(wrapped(x, w), want, rtol=1e-5, atol=1e-5)
  labels = re.findall(r"dim_labels=([^,\s]+)",
                      wrapped.lower(x, w).as_text(dialect="hlo"))
  assert labels == [CANONICAL]


def _scan_grads(wrap, remat=False):
  x, w = _data((4, 12, 12, 8), (3, 3, 8, 8), seed=1)
  kw = dict(window_strides=(2, 2), padding=((1, 1), (1, 1)))

  def first(x, w):
    return jax.nn.relu(_conv(x, w, kw))
  first = jax.checkpoint(first) if remat else first  # as remat=encoder

  def loss(w, x):
    h = first(x, w)
    return jnp.sum(_conv(h, w, dict(padding=((1, 1), (1, 1)))) ** 2)

  g = jax.grad(loss)
  g = loop_convs.canonical_convs(g) if wrap else g

  def run(w, x):
    body = lambda acc, xi: (acc + g(w, xi), None)
    return jax.lax.scan(body, jnp.zeros_like(w), x.reshape(2, 2, 12, 12, 8))[0]
  f = jax.jit(run)
  return f(w, x), f.lower(w, x).compile().as_text()


@pytest.mark.parametrize("remat", [False, True], ids=["plain", "checkpoint"])
def test_loop_body_convs_are_canonical_and_gradients_match(remat):
  got, hlo = _scan_grads(wrap=True, remat=remat)
  labels = set(re.findall(r"dim_labels=([^,\s]+)", hlo))
  assert labels == {CANONICAL}, labels
  # Unwrapped, XLA:CPU runs the body's backward convs as naive loops: the
  # same numbers, slowly.
  want, _ = _scan_grads(wrap=False, remat=remat)
  np.testing.assert_allclose(got, want, rtol=1e-5,
                             atol=1e-5 * float(np.abs(want).max()))


def test_off_when_rewrites_are_off(monkeypatch):
  monkeypatch.setattr(ops, "CPU_CONV_REWRITES", False)
  x, w = _data((1, 3, 5, 5), (2, 3, 3, 3))
  f = lambda x, w: _conv(x, w, dict(padding=((1, 1), (1, 1))),
                         ("NCHW", "OIHW", "NCHW"))
  jaxpr = jax.make_jaxpr(loop_convs.canonical_convs(f))(x, w)
  assert "transpose" not in str(jaxpr)
