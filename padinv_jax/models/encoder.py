"""The PadInv encoder (and the pSp / e4e baselines): IR-SE body, FPN, heads.

DESIGN.md section 2. Input: [N, 256, 256, 3] images in [-1, 1]. Output:
W+ codes [N, num_codes, w_dim] (18 codes, split [3, 4, 11] over the 16, 32
and 64 px FPN levels) and, with the padding space, the padding maps
{"const": p0, "layer0": ..., "layer{2(P-1)}": ...} of [N, S, S, fpn_channels]
with S = 2^(P+1) + 2.

Variables (``Encoder.init``):
  params:
    stem/{conv/kernel, bn/{scale, bias}, prelu/weight}
    body/stage{s}_unit{u}/...        IR-SE units (see irse.py)
    fpn_lateral{i}/{kernel, bias}    1x1, stage (4 - L + i) -> fpn_channels
    head{j}/conv{k}/{kernel, bias}   Map2Style 3x3 stride-2 convs
    head{j}/linear/{weight, bias}    equalised dense fpn -> w_dim
    pad_unit{k}/...                  padding branch IR-SE units
    pad_head{k}/{kernel, bias}       1x1 convs giving the map of layer 2k
  batch_stats: {mean, var} of every BatchNorm (PyTorch running stats)
  buffers: w_avg [w_dim] (or [num_codes, w_dim]), added to every code. It is
    NOT trained; PadInv takes it from the GAN checkpoint's non-smooth
    generator.w_avg (set it when building a model from a generator).
Train mode (``train=True``) needs ``mutable=["batch_stats"]``; statistics
then cover the whole batch given to the call (the global batch under a
sharded jit = SyncBN).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from padinv_jax.models import config as config_lib
from padinv_jax.models import irse
from padinv_jax.models import ops
from padinv_jax.models import resize

# pSp / PadInv heads read FPN levels high-level first: index 1 is the 32 px
# level at 256 px input, the one the padding branch starts from.
PADDING_LEVEL = 1

# Units per stage by depth (config.encoder.depth).
UNITS = irse.UNIT_COUNTS


class Map2Style(nn.Module):
  """pSp's GradualStyleBlock (PadInv's Map2StyleCodeHead).

  log2(n) x [3x3 conv stride 2 pad 1 + LeakyReLU(0.01)] -> EqualDense.

  The convs have ``features`` channels (the code width); PyTorch's default
  init. The equalised dense has weight N(0, 1) scaled by 1/sqrt(in) at run
  time, bias 0, lr_mul 1.
  """
  features: int
  dtype: Any = jnp.float32  # the convs' compute dtype (see ops.TorchConv)

  @nn.compact
  def __call__(self, x, patches=None):
    """x [N, n, n, C] -> code [N, features]; ``patches``: optional
    ``ops.conv_patches(x, 3, 2, 1)`` shared by the heads of one level."""
    n = x.shape[1]
    num_convs = int(round(math.log2(n)))
    if 2 ** num_convs != n or x.shape[2] != n:
      raise ValueError(f"Map2Style needs a square power-of-two feature map, "
                       f"got {x.shape[1:3]}")
    for k in range(num_convs):
      x = ops.TorchConv(self.features, 3, stride=2, padding=1,
                        dtype=self.dtype,
                        name=f"conv{k}")(x, patches if k == 0 else None)
      x = jnp.where(x >= 0, x, 0.01 * x)
    chex.assert_shape(x, (None, 1, 1, self.features))
    x = x.reshape(x.shape[0], self.features)
    return ops.EqualDense(self.features, lr_mul=1.0, name="linear")(x)


class Encoder(nn.Module):
  """PadInv encoder; build it with :func:`build_encoder` from a config.

  Attributes mirror ``config.encoder_config`` (see there); ``axis_name`` is
  the BatchNorm cross-device axis under pmap (None under a global-view jit).
  The heads' conv counts follow the actual level sides (log2 n); the
  original hard-codes sides 16 * 2^level, the same thing at its only input
  size, 256 px, so other input sizes have no PyTorch reference. Not offered:
  the original's only_pad_even=False (crashes there, rejected by
  validate_encoder_config) and its use_padding_modulation_head=False.
  """
  depth: int = 50
  input_size: int = 256
  stem_channels: int = 64
  stage_channels: Sequence[int] = irse.STAGE_CHANNELS
  fpn_channels: int = 512
  w_dim: int = 512
  codes_per_level: Sequence[int] = (3, 4, 11)
  encoder_type: str = "psp"
  use_padding_space: bool = True
  pad_layer_num: int = 4
  pad_units: int = 2
  w_avg_per_code: bool = False
  units: Optional[Sequence[int]] = None
  axis_name: Optional[str] = None
  remat: bool = False  # rematerialise the IR-SE units (memory for compute)
  # Compute dtype of the convolutions (kernels stay float32; BatchNorm,
  # PReLU, squeeze-excitation, the FPN sums, resizes and the heads' dense
  # layers run in float32 on float32 activations).
  dtype: Any = jnp.float32

  @property
  def num_codes(self) -> int:
    return sum(self.codes_per_level)

  @nn.compact
  def __call__(self, images, train: bool = False):
    """Encodes images.

    Args:
      images: [N, input_size, input_size, 3] float in [-1, 1].
      train: BatchNorm mode (batch statistics and running-stat updates).

    Returns:
      (ws [N, num_codes, w_dim], paddings): paddings is
      {"const": p0, "layer0": ..., ...} of [N, S, S, fpn_channels], or {}
      when use_padding_space is False (pSp / e4e).
    """
    chex.assert_shape(images, (None, self.input_size, self.input_size, 3))
    n = images.shape[0]
    num_levels = len(self.codes_per_level)

    dt = self.dtype
    x = irse.Stem(self.stem_channels, axis_name=self.axis_name, dtype=dt,
                  name="stem")(images, train)
    stages = irse.IRSEBody(self.depth, tuple(self.stage_channels),
                           axis_name=self.axis_name, units=self.units,
                           remat=self.remat, dtype=dt, name="body")(x, train)

    # FPN over the last `num_levels` stages (low level first); the top level
    # enters unchanged, so its width must already be fpn_channels.
    feats = list(stages[-num_levels:])
    for i in range(num_levels - 1):
      feats[i] = ops.TorchConv(self.fpn_channels, 1, dtype=dt,
                               name=f"fpn_lateral{i}")(feats[i])
    for i in range(num_levels - 1, 0, -1):
      h, w = feats[i - 1].shape[1:3]
      feats[i - 1] = feats[i - 1] + resize.resize_bilinear(feats[i], (h, w))
    feats = feats[::-1]  # high level (smallest) first, as the heads read them

    codes = []
    for level, count in enumerate(self.codes_per_level):
      # The heads of a level read the same map: on XLA:CPU their first
      # convs ran 1.4-1.7x faster as one patch extraction plus a matmul per
      # head than as separate convs (benchmarks/RESULTS.md); a single conv
      # does not gain, other backends keep their convs.
      patches = None
      if count > 1 and feats[level].shape[1] > 1 and ops.cpu_conv_rewrites():
        patches = ops.conv_patches(feats[level].astype(dt), 3, stride=2,
                                   padding=1)
      for _ in range(count):
        j = len(codes)
        codes.append(Map2Style(self.w_dim, dtype=dt, name=f"head{j}")(
            feats[level], patches))
    ws = jnp.stack(codes, axis=1)  # [N, num_codes, w_dim]
    if self.encoder_type == "e4e":
      # e4e: every code is a delta on the first one.
      ws = jnp.concatenate([ws[:, :1], ws[:, :1] + ws[:, 1:]], axis=1)
    w_avg_shape = ((self.num_codes, self.w_dim) if self.w_avg_per_code
                   else (self.w_dim,))
    w_avg = self.variable("buffers", "w_avg", jnp.zeros, w_avg_shape,
                          jnp.float32)
    ws = ws + w_avg.value.astype(ws.dtype)
    chex.assert_shape(ws, (n, self.num_codes, self.w_dim))

    if not self.use_padding_space:
      return ws, {}

    p = feats[PADDING_LEVEL]
    for k in range(self.pad_units):
      p = irse.IRSEUnit(self.fpn_channels, 1, axis_name=self.axis_name,
                        dtype=dt, name=f"pad_unit{k}")(p, train)
    size = config_lib.padding_size(self.pad_layer_num)
    p0 = resize.resize_bicubic(p, size)
    paddings = {"const": p0}
    for k in range(self.pad_layer_num):
      paddings[f"layer{2 * k}"] = ops.TorchConv(
          self.fpn_channels, 1, dtype=dt, name=f"pad_head{k}")(p0)
    chex.assert_shape(list(paddings.values()),
                      (n, size, size, self.fpn_channels))
    return ws, paddings


def _enc_part(config):
  return config.encoder if "encoder" in config else config


def _int_ok(v, lo, hi):
  return not isinstance(v, bool) and isinstance(v, int) and lo <= v <= hi


def _check_ranges(c) -> None:
  """Every width and count in the range a real encoder has, before building."""
  scalars = {"stem_channels": 4096, "fpn_channels": 4096, "w_dim": 4096,
             "pad_units": 16, "pad_layer_num": 5, "input_size": 2048}
  for name, hi in scalars.items():
    v = c.get(name)
    if not _int_ok(v, 0 if name == "pad_units" else 1, hi):
      raise ValueError(f"encoder.{name} must be an integer in "
                       f"{0 if name == 'pad_units' else 1}..{hi}, got {v!r}")
  for name, n, lo, hi in (("stage_channels", 4, 1, 4096),
                          ("codes_per_level", None, 0, 64),
                          ("units", 4, 0, 64)):
    v = c.get(name)
    if v is None and name == "units":
      continue
    if (not isinstance(v, (tuple, list)) or (n and len(v) != n) or
        not 1 <= len(v) <= 8 or not all(_int_ok(x, lo, hi) for x in v)):
      raise ValueError(f"encoder.{name} must be {n or 'a few'} integers in "
                       f"{lo}..{hi}, got {v!r}")


def validate_encoder_config(enc_cfg) -> None:
  """Raises ValueError for configurations the original cannot run.

  Args:
    enc_cfg: ``config.encoder`` (or a whole ModelConfig).
  """
  c = _enc_part(enc_cfg)
  _check_ranges(c)
  if c.get("units") is not None:
    irse.unit_specs(units=c.units)  # validates the override
  elif c.depth not in irse.UNIT_COUNTS:
    raise ValueError(f"encoder.depth must be one of {sorted(irse.UNIT_COUNTS)}"
                     f", got {c.depth}")
  if c.encoder_type not in ("psp", "e4e"):
    raise ValueError(f"encoder.encoder_type must be 'psp' or 'e4e', got "
                     f"{c.encoder_type!r}")
  if c.get("only_pad_even", True) is not True:
    raise ValueError(
        "encoder.only_pad_even=False is not supported: in the original PadInv "
        "code that mode feeds padding maps to the up-sampling convs and "
        "crashes, so there is no reference behaviour. Remove the field (the "
        "original's default, padding layers 0, 2, 4, ..., is always used).")
  levels = len(c.codes_per_level)
  if not 1 <= levels <= 4:
    raise ValueError(f"encoder.codes_per_level needs 1..4 FPN levels, got "
                     f"{tuple(c.codes_per_level)}")
  if c.stage_channels[-1] != c.fpn_channels:
    raise ValueError(
        f"encoder.fpn_channels ({c.fpn_channels}) must equal the last stage's "
        f"width stage_channels[-1] ({c.stage_channels[-1]}): the FPN's top "
        f"level enters without a lateral conv.")
  if c.input_size & (c.input_size - 1) or c.input_size < 2 ** (levels + 3):
    raise ValueError(f"encoder.input_size must be a power of two, got "
                     f"{c.input_size}")
  if c.use_padding_space:
    if levels < 2:
      raise ValueError("the padding branch reads the second FPN level: "
                       "codes_per_level needs at least 2 levels")
    if not 1 <= c.pad_layer_num <= 5:
      raise ValueError(f"encoder.pad_layer_num must be in 1..5, got "
                       f"{c.pad_layer_num}")


def check_compatible(model_config) -> None:
  """Checks that an encoder's outputs fit the generator of a ModelConfig.

  Padding maps have the FPN width, which must equal the generator's channels
  at every padded layer (const and layers 0, 2, ..., 2(P-1) at 4, 4, 8, 16,
  ... px); codes must have the generator's w_dim and cover its num_ws.

  Args:
    model_config: a whole ModelConfig (with .generator and .encoder).

  Raises:
    ValueError naming the mismatching field.
  """
  g, e = model_config.generator, model_config.encoder
  validate_encoder_config(e)
  if e.w_dim != g.w_dim:
    raise ValueError(f"encoder.w_dim ({e.w_dim}) != generator.w_dim "
                     f"({g.w_dim})")
  if sum(e.codes_per_level) < config_lib.num_ws(g):
    raise ValueError(
        f"the encoder predicts {sum(e.codes_per_level)} codes but the "
        f"{g.resolution} px generator reads {config_lib.num_ws(g)}")
  if not e.use_padding_space:
    return
  if e.pad_layer_num != g.pad_layer_num:
    raise ValueError(f"encoder.pad_layer_num ({e.pad_layer_num}) != "
                     f"generator.pad_layer_num ({g.pad_layer_num})")
  res = [4] + [4 * 2 ** k for k in range(e.pad_layer_num)]
  names = config_lib.padding_keys(e.pad_layer_num)
  for name, r in zip(names, res):
    if r > g.resolution:
      raise ValueError(f"padding map {name!r} targets a {r} px layer but the "
                       f"generator stops at {g.resolution} px; lower "
                       f"pad_layer_num")
    ch = config_lib.channels(g, r)
    if ch != e.fpn_channels:
      raise ValueError(
          f"padding map {name!r} has encoder.fpn_channels = {e.fpn_channels} "
          f"channels but the generator's {r} px layer has {ch}; set "
          f"encoder.fpn_channels (and stage_channels[-1]) to {ch}.")


def build_encoder(enc_cfg, axis_name: Optional[str] = None,
                  remat: bool = False, dtype=jnp.float32) -> Encoder:
  """The Encoder module for ``config.encoder`` (or a whole ModelConfig).

  ``remat`` recomputes each IR-SE unit's activations in the backward pass
  (jax.checkpoint; the parameter tree is unchanged). ``dtype``: compute
  dtype of the convolutions (float32 or bfloat16; see Encoder.dtype).
  """
  c = _enc_part(enc_cfg)
  validate_encoder_config(c)
  return Encoder(depth=c.depth, input_size=c.input_size,
                 stem_channels=c.stem_channels,
                 stage_channels=tuple(c.stage_channels),
                 fpn_channels=c.fpn_channels, w_dim=c.w_dim,
                 codes_per_level=tuple(c.codes_per_level),
                 encoder_type=c.encoder_type,
                 use_padding_space=c.use_padding_space,
                 pad_layer_num=c.pad_layer_num, pad_units=c.pad_units,
                 w_avg_per_code=c.w_avg_per_code,
                 units=None if c.get("units") is None else tuple(c.units),
                 axis_name=axis_name, remat=remat,
                 dtype=_compute_dtype(dtype))


def _compute_dtype(dtype):
  d = jnp.dtype(dtype)
  if d not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)):
    raise ValueError(f"encoder compute dtype must be float32 or bfloat16, "
                     f"got {d}")
  return d


def init_encoder(rng, config):
  """Random encoder variables with PyTorch's default initialisers.

  Args:
    rng: a PRNG key.
    config: a ModelConfig or its encoder part.

  Returns:
    {"params", "batch_stats", "buffers": {"w_avg"}}; w_avg is zeros (set it
    from the GAN's non-smooth mapping w_avg for PadInv training).
  """
  model = build_encoder(config)
  # Flax derives one key per variable by folding in every component of its
  # path; with threefry that is thousands of hash calls for ~350 nested
  # variables and dominates XLA's compile time (~4x). Initial values only
  # need to be random, so derive a counter-based 'unsafe_rbg' key from rng
  # (deterministic for a given rng and backend).
  if not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.wrap_key_data(rng)
  rbg = jax.random.wrap_key_data(
      jax.random.bits(rng, (4,), jnp.uint32), impl="unsafe_rbg")
  return _jit_init(model, rbg)


@functools.partial(jax.jit, static_argnums=0)
def _jit_init(model: Encoder, rng):
  # Module-level jit keyed on the (hashable) module: one compile per config.
  x = jnp.zeros((1, model.input_size, model.input_size, 3), jnp.float32)
  return model.init(rng, x)


def encoder_shapes(config):
  """jax.eval_shape of init_encoder (no compute): the variable tree's shapes."""
  return jax.eval_shape(lambda r: init_encoder(r, config), jax.random.key(0))
