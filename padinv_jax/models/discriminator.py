"""StyleGAN2 resnet discriminator (stylegan2-ada-pytorch semantics), NHWC.

PadInv's LSUN recipes train the GAN's own discriminator alongside the
encoder (DESIGN.md section 3). Hammer's StyleGAN2Discriminator, which PadInv
checkpoints hold, computes the same function under other key names.

Network for input resolution R, C(r) = min(channel_base // r, channel_max):
  b{R}.fromrgb: 1x1 conv 3 -> C(R), lrelu.
  b{r}, r = R .. 8 (resnet block):
    skip  = 1x1 conv C(r) -> C(r/2), no bias, FIR-down first, gain sqrt(.5)
    x     = conv0 (3x3, lrelu) ; conv1 (FIR [1,3,3,1] with pad 2, then 3x3
            stride 2, lrelu, gain sqrt(.5))
    x     = skip + x
  b4 (epilogue): minibatch stddev -> conv 3x3 (C+F -> C, lrelu) ->
    flatten -> fc (C*16 -> C, lrelu) -> out (C -> 1, linear).
Equalised lr: stored weights N(0, 1), runtime weight W / sqrt(fan_in); lrelu
is lrelu(0.2) * sqrt(2); convs with a bias clamp to +-conv_clamp * gain.

Minibatch stddev: groups of G = min(group_size, local batch) samples, where
sample j of a device's shard joins group j % (local batch / G) (NVIDIA's
reshape(G, -1, ...)). The original ran one process per GPU, so groups never
span devices: pass ``num_shards`` = the number of devices the batch is
sharded over and the groups are formed within each contiguous shard, giving
per-device results under a global jit over a ('data',) mesh.

Parameter tree (``d_vars["params"]``; names mirror NVIDIA's keys):
  b{r}/fromrgb/{weight [1, 1, 3, C], bias}      (r = R only)
  b{r}/conv0/{weight [3, 3, C, C], bias}
  b{r}/conv1/{weight [3, 3, C, C'], bias}
  b{r}/skip/weight [1, 1, C, C']
  b4/conv/{weight [3, 3, C + F, C], bias}
  b4/fc/{weight [16 C, C], bias}   input axis in (h, w, c) order: NVIDIA's
        [C, 16 C] weight is reshaped to [C_out, C, 4, 4], transposed to
        (h, w, c, out) and flattened (the converter does this).
  b4/out/{weight [C, 1], bias}
Conv weights are HWIO (torch OIHW transposed 2, 3, 1, 0); dense [in, out].
"""

from __future__ import annotations

import math
from typing import Optional

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from padinv_jax.models import config as config_lib
from padinv_jax.models import ops

FIR = ops.fir_filter((1, 3, 3, 1))


def discriminator_config(**overrides) -> ml_collections.ConfigDict:
  """StyleGAN2 config-F resnet discriminator.

  Args:
    **overrides: any field below, e.g. ``resolution=256, conv_clamp=256``.

  Returns:
    A ConfigDict: resolution, channel_base, channel_max, conv_clamp,
    mbstd_group_size, mbstd_num_channels, img_channels.
  """
  c = ml_collections.ConfigDict()
  c.resolution = 256
  c.channel_base = 32768
  c.channel_max = 512
  c.conv_clamp = ml_collections.FieldReference(None, field_type=float)
  c.mbstd_group_size = 4
  c.mbstd_num_channels = 1
  c.img_channels = 3
  return config_lib.override(c, overrides, "discriminator")


def disc_part(config):
  """Accept a config with a ``.discriminator`` part, or the part itself."""
  return config.discriminator if "discriminator" in config else config


def channels(d_cfg, res: int) -> int:
  return min(d_cfg.channel_base // res, d_cfg.channel_max)


def block_resolutions(d_cfg) -> list[int]:
  """[R, R/2, ..., 8]: the resolutions with a resnet block."""
  r = d_cfg.resolution
  if r < 8 or r & (r - 1):
    raise ValueError(f"discriminator resolution must be a power of two >= 8, "
                     f"got {r}")
  return [2 ** i for i in range(int(math.log2(r)), 2, -1)]


class EqConv(nn.Module):
  """NVIDIA's Conv2dLayer (up=1), with optional FIR down-sampling by 2.

  down=2 with a 3x3 kernel: FIR-filter with padding 2 each side, then the
  conv with stride 2 (conv2d_resample's strided fast path); with a 1x1
  kernel: FIR-filter and decimate with padding 1, then the conv.
  """
  features: int
  kernel_size: int
  down: int = 1
  use_bias: bool = True
  activation: str = "lrelu"
  conv_clamp: Optional[float] = None

  @nn.compact
  def __call__(self, x, gain: float = 1.0):
    k = self.kernel_size
    cin = x.shape[-1]
    w = self.param("weight", ops.normal_init(1.0), (k, k, cin, self.features))
    w = w * (1.0 / math.sqrt(cin * k * k))
    if self.down == 2 and k == 1:
      x = ops.upfirdn2d(x, FIR, down=2, pad=(1, 1, 1, 1))
      x = ops.conv2d(x, w)
    elif self.down == 2:
      p = k // 2 + 1  # k // 2 + (filter taps - down + 1) // 2, both sides
      x = ops.upfirdn2d(x, FIR, pad=(p, p, p, p))
      x = ops.conv2d(x, w, stride=2)
    else:
      x = ops.conv2d(x, w, padding=k // 2)
    b = (self.param("bias", nn.initializers.zeros, (self.features,))
         if self.use_bias else None)
    act_gain = (ops.SQRT2 if self.activation == "lrelu" else 1.0) * gain
    clamp = None if self.conv_clamp is None else self.conv_clamp * gain
    return ops.bias_act(x, b, act=self.activation, gain=act_gain, clamp=clamp)


def minibatch_stddev(x, group_size: Optional[int] = 4, num_channels: int = 1,
                     num_shards: int = 1):
  """NVIDIA's MinibatchStdLayer, groups formed within each batch shard.

  Args:
    x: [N, H, W, C] with N divisible by num_shards.
    group_size: G = min(group_size, N / num_shards); None = whole shard.
    num_channels: F; channels are split into F consecutive groups.
    num_shards: number of contiguous batch shards (devices) the original
      would have run separately.

  Returns:
    [N, H, W, C + F].
  """
  n, h, w, c = x.shape
  if n % num_shards:
    raise ValueError(f"minibatch stddev: batch {n} does not split into "
                     f"{num_shards} equal device shards")
  local = n // num_shards
  g = local if group_size is None else min(group_size, local)
  if local % g:
    raise ValueError(f"minibatch stddev: the per-device batch {local} must "
                     f"be a multiple of the group size {g}")
  f = num_channels
  y = x.astype(jnp.float32).reshape(num_shards, g, local // g, h, w, f, c // f)
  y = y - jnp.mean(y, axis=1, keepdims=True)
  y = jnp.mean(jnp.square(y), axis=1)                  # [S, n, H, W, F, c]
  y = jnp.sqrt(y + 1e-8)
  y = jnp.mean(y, axis=(2, 3, 5))                      # [S, n, F]
  y = jnp.broadcast_to(y[:, None], (num_shards, g, local // g, f))
  y = jnp.broadcast_to(y.reshape(n, 1, 1, f), (n, h, w, f)).astype(x.dtype)
  return jnp.concatenate([x, y], axis=-1)


class DiscriminatorBlock(nn.Module):
  """One resnet block b{r}: [fromrgb], skip, conv0, conv1 (see module doc)."""
  tmp_channels: int
  out_channels: int
  first: bool = False
  conv_clamp: Optional[float] = None

  @nn.compact
  def __call__(self, x):
    clamp = self.conv_clamp
    if self.first:  # x is the image
      x = EqConv(self.tmp_channels, 1, conv_clamp=clamp, name="fromrgb")(x)
    y = EqConv(self.out_channels, 1, down=2, use_bias=False,
               activation="linear", name="skip")(x, gain=math.sqrt(0.5))
    x = EqConv(self.tmp_channels, 3, conv_clamp=clamp, name="conv0")(x)
    x = EqConv(self.out_channels, 3, down=2, conv_clamp=clamp,
               name="conv1")(x, gain=math.sqrt(0.5))
    return y + x


class Epilogue(nn.Module):
  """b4: minibatch stddev, 3x3 conv, fc (C*16 -> C), out (C -> 1)."""
  channels: int
  conv_clamp: Optional[float] = None
  mbstd_group_size: Optional[int] = 4
  mbstd_num_channels: int = 1
  num_shards: int = 1

  @nn.compact
  def __call__(self, x):
    chex.assert_shape(x, (None, 4, 4, self.channels))
    if self.mbstd_num_channels > 0:
      x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_channels,
                           self.num_shards)
    x = EqConv(self.channels, 3, conv_clamp=self.conv_clamp, name="conv")(x)
    x = x.reshape(x.shape[0], -1)  # (h, w, c) order; see the module docstring
    x = ops.EqualDense(self.channels, activation="lrelu", name="fc")(x)
    return ops.EqualDense(1, name="out")(x)


class Discriminator(nn.Module):
  """StyleGAN2 resnet D: images [N, R, R, 3] in [-1, 1] -> scores [N, 1].

  Attributes:
    resolution, channel_base, channel_max, conv_clamp, mbstd_group_size,
    mbstd_num_channels: as in discriminator_config.
    num_shards: device shards for the minibatch-stddev groups.
  """
  resolution: int = 256
  channel_base: int = 32768
  channel_max: int = 512
  conv_clamp: Optional[float] = None
  mbstd_group_size: Optional[int] = 4
  mbstd_num_channels: int = 1
  num_shards: int = 1

  def nf(self, res):
    return min(self.channel_base // res, self.channel_max)

  @nn.compact
  def __call__(self, images):
    r = self.resolution
    chex.assert_shape(images, (None, r, r, 3))
    x = images
    for res in [2 ** i for i in range(int(math.log2(r)), 2, -1)]:
      x = DiscriminatorBlock(self.nf(res), self.nf(res // 2), first=res == r,
                             conv_clamp=self.conv_clamp, name=f"b{res}")(x)
    return Epilogue(self.nf(4), self.conv_clamp, self.mbstd_group_size,
                    self.mbstd_num_channels, self.num_shards, name="b4")(x)


def _module(config, num_shards: int = 1) -> Discriminator:
  d = disc_part(config)
  block_resolutions(d)  # validates the resolution
  if d.get("img_channels", 3) != 3:
    raise ValueError("only RGB discriminators are supported "
                     f"(img_channels=3), got {d.img_channels}")
  return Discriminator(
      resolution=d.resolution, channel_base=d.channel_base,
      channel_max=d.channel_max, conv_clamp=d.conv_clamp,
      mbstd_group_size=d.mbstd_group_size,
      mbstd_num_channels=d.mbstd_num_channels, num_shards=num_shards)


def init_discriminator(rng: jax.Array, config):
  """Random D variables {"params": {"b{r}": {...}, "b4": {...}}} (NVIDIA init).

  Args:
    rng: PRNG key.
    config: discriminator_config() or a config with a .discriminator part.

  Returns:
    {"params": tree as in the module docstring}.
  """
  d = disc_part(config)
  m = _module(d)
  x = jnp.zeros((1, d.resolution, d.resolution, 3), jnp.float32)
  # jit: eager init dispatches (and compiles) every op separately.
  v = jax.jit(m.init)(rng, x)
  return {"params": v["params"]}


def d_scores(d_vars, images, *, config, num_shards: int = 1):
  """Discriminator logits.

  Args:
    d_vars: {"params": ...} from init_discriminator or a converter.
    images: [N, R, R, 3] in [-1, 1]. Under a jit over a ('data',) mesh the
      batch is the global batch, sharded in contiguous blocks.
    config: discriminator_config() or a config with a .discriminator part.
    num_shards: how many device shards the batch holds (the mesh size);
      the minibatch-stddev groups stay within a shard, as in the original's
      one-process-per-GPU training. 1 = the whole batch is one device's
      (also the right value inside pmap / shard_map, where each call sees
      only its own device's batch).

  Returns:
    [N] float32 scores.
  """
  m = _module(config, num_shards)
  return m.apply(d_vars, images)[:, 0]
