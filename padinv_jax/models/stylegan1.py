"""StyleGAN1 (NVIDIA's G_style at a fixed final lod) with the padding space, NHWC.

DESIGN.md section 10 (NVlabs/stylegan training/networks_stylegan.py).
Mapping: z pixel-normalised, ``mapping_layers`` x (equalised dense, gain
sqrt 2, lr_mul 0.01 on weight and bias, leaky ReLU 0.2 WITHOUT output
gain). Synthesis, per layer i: [conv] -> + noise x per-channel weight ->
+ bias -> lrelu -> instance norm (eps 1e-8) -> AdaIN x (s0 + 1) + s1 from an
equalised dense of w_i (the +1 added at run time). 4x4: a learned constant
(initialised to ones) then a 3x3 conv; each block r >= 8: an up-sampling
conv (nearest x2 + 3x3 below 128 px; from 128 px the fused transposed conv
with the 4-tap summed kernel, which equals nearest x2 + the spatially
FLIPPED 3x3 kernel) followed by the [1, 2, 1] blur, then a 3x3 conv. ToRGB
at the final resolution only (1x1, linear). Equalised lr: stored N(0, 1),
run time W gain / sqrt(fan_in).

The padding space, by the rule of section 1: "const" replaces the tiled
constant (centre 4 x 4 crop), and "layer0", "layer2", "layer4", "layer6"
(the plain 3x3 convs at 4, 8, 16, 32 px, SG1 layers 1, 3, 5, 7) take the
instance-aware ring instead of zero padding (not style-scaled: SG1 convs
are not modulated). Absent keys keep the original behaviour.

Parameter tree, named as NVIDIA's TF variables with "/" inside a scope
written "_" (a TF pickle converts by rename; TF [kh, kw, in, out] is HWIO):
  mapping/Dense{i}/{weight [in, out], bias}         buffers: mapping/w_avg
  synthesis/4x4_Const/{const [4, 4, C], bias, Noise/weight [C],
                       StyleMod/{weight [w_dim, 2C], bias}}
  synthesis/4x4_Conv/{weight [3, 3, C, C], bias, Noise/weight, StyleMod/*}
  synthesis/{r}x{r}_Conv0_up/*, synthesis/{r}x{r}_Conv1/*
  synthesis/ToRGB_lod0/{weight [1, 1, C, 3], bias}
  buffers: synthesis/{layer}/noise [r, r] (NVIDIA's noise{i}, layer i)
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from padinv_jax.models import ops
from padinv_jax.models.stylegan2 import (broadcast_ws, centre_crop,
                                         padded_input, pixel_norm)

SQRT2 = math.sqrt(2.0)
# NVIDIA's Gs.run defaults: truncation psi 0.7 on layers < 8 (pass them
# explicitly; padinv_jax.mapping's default psi 1 means no truncation).
NVIDIA_TRUNCATION = (0.7, 8)
FUSED_FROM = 128  # fused_scale='auto': output resolution >= 128


def _lrelu(x):
  return jnp.where(x >= 0, x, 0.2 * x)


def _runtime(w, gain, lr_mul=1.0):
  fan_in = int(np.prod(w.shape[:-1]))
  return w * (gain / math.sqrt(fan_in) * lr_mul)


def blur(x):
  """[1, 2, 1] x [1, 2, 1] / 16, depthwise, zero padding 1."""
  k = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0
  c = x.shape[-1]
  w = jnp.asarray(np.tile(k[:, :, None, None], (1, 1, 1, c)), x.dtype)
  return ops.conv2d(x, w, padding=1, groups=c)


def upsample_nearest(x):
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Noise(nn.Module):
  """The per-channel noise weight (NVIDIA's Noise/weight, initialised 0)."""

  @nn.compact
  def __call__(self, c):
    return self.param("weight", nn.initializers.zeros, (c,))


class StyleMod(nn.Module):
  """AdaIN styles s = dense(w) [N, 2C] (gain 1; the +1 is added at run time)."""
  features: int

  @nn.compact
  def __call__(self, w):
    weight = self.param("weight", ops.normal_init(1.0),
                        (w.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    return w.astype(jnp.float32) @ _runtime(weight, 1.0) + bias


class Layer(nn.Module):
  """One synthesis layer: the constant or an [up-sampling] 3x3 conv, then the
  epilogue: noise -> bias -> lrelu -> instance norm -> AdaIN."""
  features: int
  resolution: int
  kind: str  # "const" | "conv" | "up"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, w, padding_map=None, noise_mode="const", rng=None):
    c, r = self.features, self.resolution
    n = w.shape[0]
    if self.kind == "const":
      const = self.param("const", nn.initializers.ones, (4, 4, c))
      src = const[None] if padding_map is None else centre_crop(padding_map, 4)
      x = jnp.broadcast_to(src.astype(self.dtype), (n, 4, 4, c))
    else:
      weight = self.param("weight", ops.normal_init(1.0),
                          (3, 3, x.shape[-1], c))
      k = _runtime(weight, SQRT2).astype(self.dtype)
      if self.kind == "up":
        if r >= FUSED_FROM:
          k = k[::-1, ::-1]  # the fused transposed conv, restated
        x = blur(ops.conv2d(upsample_nearest(x), k, padding=1))
      elif padding_map is not None:
        x = ops.conv2d(padded_input(x, padding_map), k)
      else:
        x = ops.conv2d(x, k, padding=1)
    noise_const = self.variable("buffers", "noise", lambda: jax.random.normal(
        self.make_rng("params"), (r, r)))
    if noise_mode == "const":
      noise = noise_const.value[None, :, :, None]
    elif noise_mode == "random":
      if rng is None:
        raise ValueError("noise_mode='random' needs an explicit PRNG key "
                         "(rng=jax.random.key(...))")
      noise = jax.random.normal(rng, (n, r, r, 1), jnp.float32)
    elif noise_mode == "none":
      noise = None
    else:
      raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got "
                       f"{noise_mode!r}")
    nw = Noise(name="Noise")(c)
    if noise is not None:
      x = x + (noise * nw).astype(x.dtype)
    b = self.param("bias", nn.initializers.zeros, (c,))
    x = _lrelu(x.astype(jnp.float32) + b)
    x = x - jnp.mean(x, axis=(1, 2), keepdims=True)
    x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=(1, 2), keepdims=True)
                          + 1e-8)
    s = StyleMod(2 * c, name="StyleMod")(w)
    return (x * (s[:, None, None, :c] + 1.0) + s[:, None, None, c:]).astype(
        self.dtype)


class MappingNetwork(nn.Module):
  """z -> pixel norm -> depth x (dense gain sqrt 2, lr_mul, lrelu) -> ws."""
  z_dim: int
  w_dim: int
  num_layers: int
  num_ws: int
  lr_mul: float = 0.01

  @nn.compact
  def __call__(self, z, psi=1.0, cutoff: Optional[int] = None):
    x = pixel_norm(z.astype(jnp.float32))
    for i in range(self.num_layers):
      x = _Dense(self.w_dim, self.lr_mul, name=f"Dense{i}")(x)
    return broadcast_ws(self, x, self.num_ws, psi, cutoff)


class _Dense(nn.Module):
  features: int
  lr_mul: float

  @nn.compact
  def __call__(self, x):
    w = self.param("weight", ops.normal_init(1.0 / self.lr_mul),
                   (x.shape[-1], self.features))
    b = self.param("bias", nn.initializers.zeros, (self.features,))
    return _lrelu(x @ _runtime(w, SQRT2, self.lr_mul) + b * self.lr_mul)


class SynthesisNetwork(nn.Module):
  """ws [N, >= num_ws, w_dim] (+ padding maps) -> images [N, R, R, 3]."""
  resolution: int
  channel_base: int
  channel_max: int
  pad_layer_num: int
  dtype: jnp.dtype = jnp.float32

  def channels(self, res):
    return min(self.channel_base // res, self.channel_max)

  @nn.compact
  def __call__(self, ws, paddings: Optional[Mapping] = None,
               noise_mode="const", rng=None):
    paddings = paddings or {}
    log2 = int(round(math.log2(self.resolution)))

    def key(i):
      return None if rng is None else jax.random.fold_in(rng, i)

    mk = lambda name, c, r, kind: Layer(c, r, kind, self.dtype, name=name)
    c4 = self.channels(4)
    x = mk("4x4_Const", c4, 4, "const")(None, ws[:, 0], paddings.get("const"),
                                        noise_mode, key(0))
    x = mk("4x4_Conv", c4, 4, "conv")(x, ws[:, 1], paddings.get("layer0"),
                                      noise_mode, key(1))
    for k in range(3, log2 + 1):
      r = 2 ** k
      c = self.channels(r)
      i = 2 * k - 4
      x = mk(f"{r}x{r}_Conv0_up", c, r, "up")(x, ws[:, i], None, noise_mode,
                                              key(i))
      x = mk(f"{r}x{r}_Conv1", c, r, "conv")(
          x, ws[:, i + 1], paddings.get(f"layer{i}"), noise_mode, key(i + 1))
    return ToRGB(name="ToRGB_lod0")(x)


class ToRGB(nn.Module):
  """1x1 conv (gain 1) + bias, no activation: the final lod's output."""

  @nn.compact
  def __call__(self, x):
    w = self.param("weight", ops.normal_init(1.0), (1, 1, x.shape[-1], 3))
    b = self.param("bias", nn.initializers.zeros, (3,))
    return jnp.einsum("nhwc,co->nhwo", x.astype(jnp.float32),
                      _runtime(w, 1.0)[0, 0]) + b


class Generator(nn.Module):
  """Mapping + synthesis, the same methods as the StyleGAN2 Generator."""
  resolution: int
  z_dim: int
  w_dim: int
  mapping_layers: int
  mapping_lr_mul: float
  channel_base: int
  channel_max: int
  pad_layer_num: int
  dtype: jnp.dtype = jnp.float32

  def setup(self):
    self.num_ws = 2 * int(round(math.log2(self.resolution))) - 2
    self.mapping = MappingNetwork(self.z_dim, self.w_dim, self.mapping_layers,
                                  self.num_ws, self.mapping_lr_mul)
    self.synthesis = SynthesisNetwork(self.resolution, self.channel_base,
                                      self.channel_max, self.pad_layer_num,
                                      self.dtype)

  def __call__(self, z):
    return self.synthesis(self.mapping(z))

  def map(self, z, psi=1.0, cutoff=None):
    return self.mapping(z, psi, cutoff)

  def synthesize(self, ws, paddings=None, noise_mode="const", rng=None):
    return self.synthesis(ws, paddings, noise_mode, rng)


def build_generator(gen_cfg, dtype=jnp.float32) -> Generator:
  return Generator(
      resolution=int(gen_cfg.resolution), z_dim=int(gen_cfg.z_dim),
      w_dim=int(gen_cfg.w_dim), mapping_layers=int(gen_cfg.mapping_layers),
      mapping_lr_mul=float(gen_cfg.mapping_lr_mul),
      channel_base=int(gen_cfg.channel_base),
      channel_max=int(gen_cfg.channel_max),
      pad_layer_num=int(gen_cfg.pad_layer_num), dtype=dtype)
