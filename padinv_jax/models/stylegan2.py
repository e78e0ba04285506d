"""StyleGAN2 (config-F, skip architecture) with PadInv's padding space, NHWC.

Semantics follow NVIDIA's stylegan2-ada-pytorch (and Hammer, which copies
it); see DESIGN.md section 1. Parameters ("params") are stored as the
originals store them (equalised lr applied at run time); the mapping
network's w_avg and the const noise maps live in the "buffers" collection.

Parameter tree (all names stable, used by the converters):
  mapping/fc{i}/{weight [in, out], bias}           buffers: mapping/w_avg
  synthesis/const [4, 4, C]
  synthesis/layer{i}/{weight [3, 3, Cin, Cout], bias, noise_strength,
                      affine/affine/{weight [w_dim, Cin], bias}}
                                                   buffers: .../noise_const [r, r]
  synthesis/torgb{k}/{weight [1, 1, Cin, 3], bias, affine/affine/...}
(affine/affine: the Affine module holds an EqualDense that is also named
"affine"; the converters use this path.)
"""

from __future__ import annotations

import functools
import math
from typing import Mapping, Optional

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from padinv_jax.models import ops

FIR = ops.fir_filter((1, 3, 3, 1))


def padded_input(x, padding_map):
  """THE PADDING SPACE: surround x with the ring of an instance-aware map.

  The (already style-modulated) activation x [N, r, r, C] is written into
  the interior of the centre (r + 2) x (r + 2) crop of ``padding_map``
  [N or 1, S, S, C]; the ring keeps the map's values, NOT style-scaled. The
  caller then runs a VALID 3x3 conv and demodulates the result (the ring's
  contribution included), exactly as PadInv's generator does.

  Args:
    x: [N, r, r, C] modulated activation.
    padding_map: [N or 1, S, S, C] with S >= r + 2 and (S - r) even.

  Returns:
    [N, r + 2, r + 2, C].
  """
  n, r = x.shape[0], x.shape[1]
  s = padding_map.shape[1]
  o = (s - r - 2) // 2
  ring = padding_map[:, o:o + r + 2, o:o + r + 2].astype(x.dtype)
  ring = jnp.broadcast_to(ring, (n,) + ring.shape[1:])
  return ring.at[:, 1:r + 1, 1:r + 1].set(x)


def upsample_conv(x, weight):
  """NVIDIA's up-sampling 3x3 conv: conv_transpose2d(stride 2) + FIR, gain 4.

  Computed polyphase: each of the four output phases of the stride-2
  transposed conv is a small valid conv of x at its own resolution with the
  taps that land on that phase (2x2, 2x1, 1x2, 1x1), interleaved into the
  (2r + 1)-sided transposed-conv output before the FIR. Same sums as a
  conv over the zero-dilated input (DESIGN 1), but XLA:CPU runs that one
  over all the inserted zeros (about 1.4x slower at 1024 px).

  Args:
    x: [N, r, r, I] (already modulated).
    weight: [3, 3, I, O] stored weight (HWIO; the torch weight unflipped).

  Returns:
    [N, 2r, 2r, O].
  """
  w = weight.astype(x.dtype)
  # Transposed conv along one axis: y[2m] = x[m] w[0] + x[m-1] w[2],
  # y[2m + 1] = x[m] w[1]; as correlations: even taps (w[2], w[0]) over x
  # padded by one on both sides, odd tap w[1].
  even, odd = jnp.stack([w[2], w[0]]), w[1:2]
  ee = ops.conv2d(x, jnp.stack([even[:, 2], even[:, 0]], 1), padding=1)
  eo = ops.conv2d(x, even[:, 1:2], padding=((1, 1), (0, 0)))
  oe = ops.conv2d(x, jnp.stack([odd[:, 2], odd[:, 0]], 1),
                  padding=((0, 0), (1, 1)))
  oo = ops.conv2d(x, odd[:, 1:2], padding=0)
  # Pad the odd phases to r + 1 and interleave: [N, r+1, 2, r+1, 2, O] ->
  # [N, 2r + 2, 2r + 2, O]; its last row and column are zero, i.e. the
  # (2r + 1)-sided output plus one of the FIR's padding zeros.
  pad = lambda a, ph, pw: jnp.pad(a, ((0, 0), (0, ph), (0, pw), (0, 0)))
  n, r1, _, c = ee.shape
  y = jnp.stack([jnp.stack([ee, pad(eo, 0, 1)], 3),
                 jnp.stack([pad(oe, 1, 0), pad(oo, 1, 1)], 3)], 2)
  y = y.reshape(n, 2 * r1, 2 * r1, c)
  return ops.upfirdn2d(y, FIR, pad=(1, 0, 1, 0), gain=4.0)


def centre_crop(padding_map, size: int):
  o = (padding_map.shape[1] - size) // 2
  return padding_map[:, o:o + size, o:o + size]


def demod_coefficients(weight, styles):
  """d[n, o] = rsqrt(sum_{kh, kw, i} (W[kh, kw, i, o] s[n, i])^2 + 1e-8)."""
  w = jnp.square(weight.astype(jnp.float32))
  # A sum of kh * kw [I, O] slices: one elementwise loop. XLA:CPU's reduce
  # over the two leading axes took 20 ms a 3x3x512x512 kernel (a fifth of a
  # 256 px synthesis at batch 1); this takes ~1 ms.
  wsq = functools.reduce(jnp.add, [w[a, b] for a in range(w.shape[0])
                                   for b in range(w.shape[1])])  # [I, O]
  return jax.lax.rsqrt(jnp.square(styles.astype(jnp.float32)) @ wsq + 1e-8)


class Affine(nn.Module):
  """The style affine: EqualDense with bias initialised to 1 (stored +1)."""
  features: int

  @nn.compact
  def __call__(self, w):
    return ops.EqualDense(self.features, bias_init=1.0, name="affine")(w)


class ModConv(nn.Module):
  """A modulated 3x3 conv layer of the synthesis network (non-fused path).

  up=2 is conv_transpose2d(stride 2) with the stored weight followed by the
  [1,3,3,1] FIR with gain 4 (equivalently a conv over the zero-dilated
  input with the spatially flipped kernel, padding 2), see upsample_conv.
  """
  features: int
  resolution: int  # output resolution
  up: int = 1
  conv_clamp: Optional[float] = None
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, w, padding_map=None, noise_mode="const", rng=None):
    cin = x.shape[-1]
    r = self.resolution
    weight = self.param("weight", ops.normal_init(1.0),
                        (3, 3, cin, self.features))
    styles = Affine(cin, name="affine")(w)  # [N, Cin]
    noise_strength = self.param("noise_strength", nn.initializers.zeros, ())
    noise_const = self.variable("buffers", "noise_const",
                                lambda: jax.random.normal(
                                    self.make_rng("params"), (r, r)))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))

    x = x * styles[:, None, None, :].astype(x.dtype)
    if self.up == 2:
      x = upsample_conv(x, weight.astype(self.dtype))
    elif padding_map is not None:
      x = ops.conv2d(padded_input(x, padding_map), weight.astype(self.dtype))
    else:
      x = ops.conv2d(x, weight.astype(self.dtype), padding=1)
    x = x * demod_coefficients(weight, styles)[:, None, None, :].astype(x.dtype)

    if noise_mode == "const":
      x = x + (noise_const.value * noise_strength)[None, :, :, None].astype(
          x.dtype)
    elif noise_mode == "random":
      if rng is None:
        raise ValueError("noise_mode='random' needs an explicit PRNG key "
                         "(rng=jax.random.key(...))")
      noise = jax.random.normal(rng, (x.shape[0], r, r, 1), jnp.float32)
      x = x + (noise * noise_strength).astype(x.dtype)
    elif noise_mode != "none":
      raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got "
                       f"{noise_mode!r}")
    return ops.bias_act(x, bias, act="lrelu", clamp=self.conv_clamp)


class ToRGB(nn.Module):
  """1x1 modulated conv without demodulation; style x 1/sqrt(Cin); no act."""
  conv_clamp: Optional[float] = None
  channels: int = 3

  @nn.compact
  def __call__(self, x, w):
    cin = x.shape[-1]
    weight = self.param("weight", ops.normal_init(1.0),
                        (1, 1, cin, self.channels))
    styles = Affine(cin, name="affine")(w) * (1.0 / math.sqrt(cin))
    bias = self.param("bias", nn.initializers.zeros, (self.channels,))
    x = x * styles[:, None, None, :].astype(x.dtype)
    x = jnp.einsum("nhwc,co->nhwo", x, weight[0, 0].astype(x.dtype))
    return ops.bias_act(x.astype(jnp.float32), bias, act="linear",
                        clamp=self.conv_clamp)


def truncate(ws, w_avg, psi=1.0, cutoff: Optional[int] = None):
  """w_avg + psi (ws - w_avg) on the first ``cutoff`` ws (None: all)."""
  if isinstance(psi, (int, float)) and psi == 1:
    return ws
  n = ws.shape[1] if cutoff is None else min(int(cutoff), ws.shape[1])
  return ws.at[:, :n].set(w_avg + psi * (ws[:, :n] - w_avg))


def pixel_norm(x):
  """x / sqrt(mean(x^2) + 1e-8) over the last axis (the mapping's input)."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True)
                           + 1e-8)


def broadcast_ws(module: nn.Module, w, num_ws: int, psi=1.0,
                 cutoff: Optional[int] = None):
  """w [N, w_dim] -> truncated ws [N, num_ws, w_dim] around the mapping's
  w_avg buffer, declared on ``module`` (both families' mapping networks)."""
  w_dim = w.shape[-1]
  w_avg = module.variable("buffers", "w_avg", jnp.zeros, (w_dim,),
                          jnp.float32)
  ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], num_ws, w_dim))
  return truncate(ws, w_avg.value, psi, cutoff)


class MappingNetwork(nn.Module):
  """z -> normalise -> depth x EqualDense(lr_mul) + lrelu -> ws [N, num_ws, w]."""
  z_dim: int
  w_dim: int
  num_layers: int
  num_ws: int
  lr_mul: float = 0.01

  @nn.compact
  def __call__(self, z, psi=1.0, cutoff: Optional[int] = None):
    x = pixel_norm(z.astype(jnp.float32))
    for i in range(self.num_layers):
      x = ops.EqualDense(self.w_dim, lr_mul=self.lr_mul, activation="lrelu",
                         name=f"fc{i}")(x)
    return broadcast_ws(self, x, self.num_ws, psi, cutoff)


class SynthesisNetwork(nn.Module):
  """ws [N, >= num_ws, w_dim] (+ padding maps) -> images [N, R, R, 3]."""
  resolution: int
  channel_base: int
  channel_max: int
  pad_layer_num: int
  conv_clamp: Optional[float] = None
  dtype: jnp.dtype = jnp.float32
  remat: bool = False  # recompute each layer's activations in the backward

  def channels(self, res):
    return min(self.channel_base // res, self.channel_max)

  @nn.compact
  def __call__(self, ws, paddings: Optional[Mapping] = None,
               noise_mode="const", rng=None):
    paddings = paddings or {}
    n = ws.shape[0]
    log2 = int(round(math.log2(self.resolution)))
    c4 = self.channels(4)
    const = self.param("const", ops.normal_init(1.0), (4, 4, c4))
    if "const" in paddings:
      x = centre_crop(paddings["const"], 4).astype(self.dtype)
      x = jnp.broadcast_to(x, (n, 4, 4, c4))
    else:
      x = jnp.broadcast_to(const.astype(self.dtype)[None], (n, 4, 4, c4))

    def layer_rng(i):
      return None if rng is None else jax.random.fold_in(rng, i)

    # static_argnums counts self: (self, x, w, padding_map, noise_mode, rng).
    conv = nn.remat(ModConv, static_argnums=(4,)) if self.remat else ModConv
    img = None
    layer = 0
    for k, res in enumerate(2 ** np.arange(2, log2 + 1)):
      res = int(res)
      cout = self.channels(res)
      mod = dict(conv_clamp=self.conv_clamp, dtype=self.dtype)
      if res > 4:
        x = conv(cout, res, up=2, name=f"layer{layer}", **mod)(
            x, ws[:, layer], None, noise_mode, layer_rng(layer))
        layer += 1
      x = conv(cout, res, name=f"layer{layer}", **mod)(
          x, ws[:, layer], paddings.get(f"layer{layer}"), noise_mode,
          layer_rng(layer))
      layer += 1
      y = ToRGB(conv_clamp=self.conv_clamp, name=f"torgb{k}")(x, ws[:, layer])
      if img is not None:
        img = ops.upfirdn2d(img, FIR, up=2, pad=(2, 1, 2, 1), gain=4.0)
        img = img + y
      else:
        img = y
    return img  # [N, R, R, 3] float32


class Generator(nn.Module):
  """Mapping + synthesis; ``init`` runs both, methods run either."""
  resolution: int
  z_dim: int
  w_dim: int
  mapping_layers: int
  mapping_lr_mul: float
  channel_base: int
  channel_max: int
  pad_layer_num: int
  conv_clamp: Optional[float] = None
  dtype: jnp.dtype = jnp.float32
  remat: bool = False

  def setup(self):
    self.num_ws = 2 * int(round(math.log2(self.resolution))) - 2
    self.mapping = MappingNetwork(self.z_dim, self.w_dim, self.mapping_layers,
                                  self.num_ws, self.mapping_lr_mul)
    self.synthesis = SynthesisNetwork(self.resolution, self.channel_base,
                                      self.channel_max, self.pad_layer_num,
                                      self.conv_clamp, self.dtype, self.remat)

  def __call__(self, z):
    return self.synthesis(self.mapping(z))

  def map(self, z, psi=1.0, cutoff=None):
    return self.mapping(z, psi, cutoff)

  def synthesize(self, ws, paddings=None, noise_mode="const", rng=None):
    return self.synthesis(ws, paddings, noise_mode, rng)


def build_generator(gen_cfg, dtype=jnp.float32, remat=False) -> Generator:
  return Generator(
      resolution=int(gen_cfg.resolution), z_dim=int(gen_cfg.z_dim),
      w_dim=int(gen_cfg.w_dim), mapping_layers=int(gen_cfg.mapping_layers),
      mapping_lr_mul=float(gen_cfg.mapping_lr_mul),
      channel_base=int(gen_cfg.channel_base),
      channel_max=int(gen_cfg.channel_max),
      pad_layer_num=int(gen_cfg.pad_layer_num),
      conv_clamp=None if gen_cfg.conv_clamp is None else float(
          gen_cfg.conv_clamp),
      dtype=dtype, remat=remat)
