"""IR-SE building blocks: improved-residual units with squeeze-excitation.

Shared by the PadInv / pSp encoder body and the ArcFace IR-SE-50 identity
network: both use exactly these units (InsightFace's bottleneck_IR_SE).

Unit (input x with ``in`` channels, output ``depth`` channels, stride s):
  res = BN -> 3x3 conv s1 (no bias) -> PReLU -> 3x3 conv stride s (no bias)
        -> BN -> squeeze-excitation
  shortcut = x[::s, ::s] when in == depth (the original's MaxPool2d(1, s)),
             else 1x1 conv stride s (no bias) -> BN
  out = res + shortcut  (no activation after the add)
Every 3x3 conv pads explicitly by (1, 1): Flax's 'SAME' pads (0, 1) for an
even input with stride 2 and would shift every stride-2 output by a pixel.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from padinv_jax.models import ops

# Units per stage for the supported depths (InsightFace get_blocks).
UNIT_COUNTS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
STAGE_CHANNELS = (64, 128, 256, 512)


class UnitSpec(NamedTuple):
  in_channels: int
  out_channels: int
  stride: int


def unit_specs(depth: int = 50,
               stage_channels: Sequence[int] = STAGE_CHANNELS,
               in_channels: Optional[int] = None,
               units: Optional[Sequence[int]] = None) -> list[list[UnitSpec]]:
  """The IR-SE body as a list of stages, each a list of units.

  The first unit of every stage has stride 2 (so a 256 px stem output gives
  128, 64, 32, 16 px stages; ArcFace's 112 px gives 56, 28, 14, 7).

  Args:
    depth: 50, 100 or 152.
    stage_channels: output channels of the four stages.
    in_channels: channels entering the first stage (the stem's width);
      defaults to stage_channels[0] as in the original.
    units: optional unit counts per stage overriding ``depth`` (small test
      and demo networks; no original checkpoint has them).

  Returns:
    ``specs[s][u]`` = UnitSpec(in_channels, out_channels, stride).
  """
  if units is not None:
    counts = tuple(int(u) for u in units)
    if len(counts) != 4 or min(counts) < 1:
      raise ValueError(f"IR-SE units must be 4 positive counts, got {units}")
  elif depth not in UNIT_COUNTS:
    raise ValueError(f"IR-SE depth must be one of {sorted(UNIT_COUNTS)}, "
                     f"got {depth}")
  else:
    counts = UNIT_COUNTS[depth]
  if len(stage_channels) != 4:
    raise ValueError(f"stage_channels needs 4 entries, got {stage_channels}")
  cin = stage_channels[0] if in_channels is None else in_channels
  specs = []
  for n, cout in zip(counts, stage_channels):
    stage = [UnitSpec(cin, cout, 2)]
    stage += [UnitSpec(cout, cout, 1) for _ in range(n - 1)]
    specs.append(stage)
    cin = cout
  return specs


class SqueezeExcite(nn.Module):
  """x * sigmoid(1x1 conv(ReLU(1x1 conv C->C/r(avg-pool x)))), no biases."""
  reduction: int = 16

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    # At least one hidden channel so tiny test widths (C < 16) still work;
    # real widths (64..512) are multiples of 16 and unaffected.
    hidden = max(1, c // self.reduction)
    s = jnp.mean(x, axis=(1, 2), keepdims=True)  # [N, 1, 1, C]
    s = ops.TorchConv(hidden, kernel_size=1, use_bias=False, name="fc1")(s)
    s = nn.relu(s)
    s = ops.TorchConv(c, kernel_size=1, use_bias=False, name="fc2")(s)
    return x * jax.nn.sigmoid(s)


class IRSEUnit(nn.Module):
  """One bottleneck_IR_SE unit (see the module docstring).

  Attributes:
    features: output channels (the original's ``depth``).
    stride: 1 or 2; applied by the second 3x3 conv and the shortcut.
    reduction: squeeze-excitation reduction (16).
    axis_name: BatchNorm cross-device axis under pmap (None under jit).
  """
  features: int
  stride: int = 1
  reduction: int = 16
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32  # the convs' compute dtype (see ops.TorchConv)

  @nn.compact
  def __call__(self, x, train: bool = False):
    chex.assert_rank(x, 4)
    cin = x.shape[-1]
    bn = lambda name: ops.TorchBatchNorm(axis_name=self.axis_name, name=name)
    if cin == self.features:
      shortcut = x[:, ::self.stride, ::self.stride]
    else:
      shortcut = ops.TorchConv(self.features, kernel_size=1, stride=self.stride,
                               use_bias=False, dtype=self.dtype,
                               name="shortcut_conv")(x)
      shortcut = bn("shortcut_bn")(shortcut, train)
    y = bn("bn1")(x, train)
    y = ops.TorchConv(self.features, 3, stride=1, padding=1, use_bias=False,
                      dtype=self.dtype, name="conv1")(y)
    y = ops.PReLU(name="prelu")(y)
    y = ops.TorchConv(self.features, 3, stride=self.stride, padding=1,
                      use_bias=False, dtype=self.dtype, name="conv2")(y)
    y = bn("bn2")(y, train)
    y = SqueezeExcite(self.reduction, name="se")(y)
    chex.assert_equal_shape([y, shortcut])
    return y + shortcut


class Stem(nn.Module):
  """input_layer: 3x3 conv s1 p1 (no bias) -> BN -> PReLU."""
  features: int = 64
  axis_name: Optional[str] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = ops.TorchConv(self.features, 3, stride=1, padding=1, use_bias=False,
                      dtype=self.dtype, name="conv")(x)
    x = ops.TorchBatchNorm(axis_name=self.axis_name, name="bn")(x, train)
    return ops.PReLU(name="prelu")(x)


class IRSEBody(nn.Module):
  """The four IR-SE stages; units named ``stage{s}_unit{u}``.

  Attributes:
    depth: 50, 100 or 152.
    stage_channels: output channels per stage.
    axis_name: BatchNorm cross-device axis under pmap.
    units: optional unit counts per stage overriding depth.

  Returns (from __call__):
    The list of the four stage outputs (the last one is the body's output).
  """
  depth: int = 50
  stage_channels: Sequence[int] = STAGE_CHANNELS
  axis_name: Optional[str] = None
  units: Optional[Sequence[int]] = None
  remat: bool = False  # recompute each unit's activations in the backward
  dtype: Any = jnp.float32  # the convs' compute dtype (see ops.TorchConv)

  @nn.compact
  def __call__(self, x, train: bool = False):
    outs = []
    specs = unit_specs(self.depth, self.stage_channels, x.shape[-1],
                       self.units)
    # static_argnums counts self: (self, x, train) -> train is 2.
    unit = nn.remat(IRSEUnit, static_argnums=(2,)) if self.remat else IRSEUnit
    for s, stage in enumerate(specs):
      for u, spec in enumerate(stage):
        x = unit(spec.out_channels, spec.stride, axis_name=self.axis_name,
                 dtype=self.dtype, name=f"stage{s}_unit{u}")(x, train)
      outs.append(x)
    return outs
