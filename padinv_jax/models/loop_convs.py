"""Convolutions that stay fast inside XLA:CPU loops.

XLA:CPU runs a convolution with its Eigen kernel only when the operands are
in NHWC / HWIO / NHWC order; its canonicalisation pass, which rewrites
every other convolution into that order with explicit transposes, visits
only the entry computation. The backward pass of a conv is made of
non-canonical convolutions (kernel gradient: features as the batch; input
gradient: the kernel's in/out swapped), so a gradient taken inside a
``lax.scan`` / ``while_loop`` body runs them as naive loop nests: 75x slower
on a [4, 64, 64, 64] 3x3 conv pair, 4-6x on a whole training step
(benchmarks/loop_convs.py).

:func:`canonical_convs` wraps a function so that every convolution it
makes, gradients included, is written in canonical order: the transposes
XLA would have added, added by hand. Apply it to the BODY of a loop; on
other backends (and outside loops, where XLA does this itself) it is not
needed. The wrapped function is not meant to be differentiated again: wrap
the gradient, not the loss.
"""

from __future__ import annotations

import functools

import jax
from jax import lax
from jax.extend import core as jex_core

from padinv_jax.models import ops

# Higher-order primitives whose body is evaluated inline (so its convs are
# rewritten too), by primitive name as jax 0.10 spells them (jax.jit ->
# "jit", jax.checkpoint -> "remat2"; tests/test_loop_convs.py checks a
# checkpoint body). Others are bound unchanged: right, but their convs stay
# as XLA makes them. remat's optimisation barriers are lost
# with it; XLA:CPU drops them anyway (benchmarks/RESULTS.md, "remat").
_INLINE = {"jit": "jaxpr", "closed_call": "call_jaxpr",
           "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr",
           "remat2": "jaxpr"}


def canonical_convs(fn):
  """``fn`` with every convolution in NHWC / HWIO / NHWC order (XLA:CPU).

  A no-op on other backends and with ops.CPU_CONV_REWRITES False (read when
  traced). Arguments and results are pytrees of arrays.
  """
  @functools.wraps(fn)
  def wrapped(*args):
    if not ops.cpu_conv_rewrites():
      return fn(*args)
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*args)
    out = _eval(closed.jaxpr, closed.consts, jax.tree_util.tree_leaves(args))
    return jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(out_shape), out)
  return wrapped


def _eval(jaxpr, consts, args):
  env = {}

  def read(v):
    return v.val if isinstance(v, jex_core.Literal) else env[v]

  for v, x in zip(jaxpr.constvars, consts):
    env[v] = x
  for v, x in zip(jaxpr.invars, args):
    env[v] = x
  for eqn in jaxpr.eqns:
    invals = [read(v) for v in eqn.invars]
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      outs = [canonical_conv(*invals, **eqn.params)]
    elif name in _INLINE and _INLINE[name] in eqn.params:
      sub = eqn.params[_INLINE[name]]
      if isinstance(sub, jex_core.ClosedJaxpr):
        outs = _eval(sub.jaxpr, sub.consts, invals)
      else:
        outs = _eval(sub, (), invals)
    else:
      ans = eqn.primitive.bind(*invals,
                               **eqn.primitive.get_bind_params(eqn.params))
      outs = ans if eqn.primitive.multiple_results else [ans]
    for v, x in zip(eqn.outvars, outs):
      env[v] = x
  return [read(v) for v in jaxpr.outvars]


def canonical_conv(lhs, rhs, *, dimension_numbers, **params):
  """lax.conv_general_dilated_p with any dimension numbers, computed as
  transpose -> a canonical (batch, spatial..., feature) conv -> transpose."""
  lhs_spec, rhs_spec, out_spec = dimension_numbers
  nd = len(lhs_spec) - 2
  lhs_perm = (lhs_spec[0], *lhs_spec[2:], lhs_spec[1])
  rhs_perm = (*rhs_spec[2:], rhs_spec[1], rhs_spec[0])
  canon = lax.ConvDimensionNumbers(
      lhs_spec=(0, nd + 1, *range(1, nd + 1)),
      rhs_spec=(nd + 1, nd, *range(nd)),
      out_spec=(0, nd + 1, *range(1, nd + 1)))
  # canonical output position of each logical output dim.
  out_perm = [0] * (nd + 2)
  out_perm[out_spec[0]] = 0
  out_perm[out_spec[1]] = nd + 1
  for i in range(nd):
    out_perm[out_spec[2 + i]] = 1 + i
  y = lax.conv_general_dilated_p.bind(
      _transpose(lhs, lhs_perm), _transpose(rhs, rhs_perm),
      dimension_numbers=canon, **params)
  return _transpose(y, tuple(out_perm))


def _transpose(x, perm):
  return x if tuple(perm) == tuple(range(x.ndim)) else lax.transpose(x, perm)
