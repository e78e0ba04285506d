"""ArcFace IR-SE-50 identity network (TreB1eN InsightFace_Pytorch), NHWC.

PadInv's ID loss and ID metric (models/arcface_model.py, the same network as
pSp's) on images in [-1, 1]:
  resize to 256 x 256 if needed (bilinear, align_corners=False, no
  antialiasing, as F.interpolate) -> crop rows 35:223, cols 32:220 (188 px)
  -> adaptive average pool to 112 (torch's uneven windows [floor(i*in/out),
  ceil((i+1)*in/out))) -> input_layer (3x3 conv 3->64 no bias, BN, PReLU)
  -> IR-SE body (padinv_jax.models.irse, the units the encoder uses) -> output
  layer: BN2d -> dropout (identity: the net is always in eval mode) ->
  flatten in (C, H, W) order -> linear 512*7*7 -> 512 -> BN1d -> x / ||x||.
The network is frozen and runs in eval mode (running BN statistics) only.

Variables ({"params", "batch_stats"}), names -> official TreB1eN keys:
  input_layer/{conv, bn, prelu}        input_layer.{0, 1, 2}
  body/stage{s}_unit{u}/...            body.{k} (k counts units over stages)
      bn1, conv1, prelu, conv2, bn2    res_layer.{0, 1, 2, 3, 4}
      se/fc1, se/fc2                   res_layer.5.fc1, res_layer.5.fc2
      shortcut_conv, shortcut_bn       shortcut_layer.{0, 1}
  output_bn2d                          output_layer.0
  output_linear/{kernel, bias}         output_layer.3 (see below)
  output_bn1d                          output_layer.4
  BN: params {scale, bias} <- weight, bias; batch_stats {mean, var} <-
  running_mean, running_var. Convs HWIO <- OIHW (transpose 2, 3, 1, 0).
  output_linear/kernel is [H*W*C, 512] with its input axis in (h, w, c)
  order (Flax flattens NHWC): torch's [512, C*H*W] weight is reshaped to
  [512, C, H, W], transposed to (H, W, C, 512) and flattened.
"""

from __future__ import annotations

import math
from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from padinv_jax.models import irse
from padinv_jax.models import ops

CROP_ROWS = (35, 223)
CROP_COLS = (32, 220)


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] weights of F.interpolate(bilinear, align_corners=False).

  Source x = (i + 0.5) * n_in / n_out - 0.5, clamped below at 0; taps
  floor(x) and floor(x) + 1 (clamped to the last index); no antialiasing.
  """
  m = np.zeros((n_out, n_in), np.float64)
  scale = n_in / n_out
  for i in range(n_out):
    x = max((i + 0.5) * scale - 0.5, 0.0)
    i0 = min(int(math.floor(x)), n_in - 1)
    i1 = min(i0 + 1, n_in - 1)
    t = x - i0
    m[i, i0] += 1.0 - t
    m[i, i1] += t
  return m.astype(np.float32)


def _adaptive_avg_matrix(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] weights of adaptive_avg_pool: uneven, overlapping windows."""
  m = np.zeros((n_out, n_in), np.float64)
  for i in range(n_out):
    a = (i * n_in) // n_out
    b = -((-(i + 1) * n_in) // n_out)  # ceil
    m[i, a:b] = 1.0 / (b - a)
  return m.astype(np.float32)


def _resample(x, mh: np.ndarray, mw: np.ndarray):
  """Separable linear resampling of [N, H, W, C] by [H', H] and [W', W]."""
  hp = jax.lax.Precision.HIGHEST
  x = jnp.einsum("oh,nhwc->nowc", jnp.asarray(mh, x.dtype), x, precision=hp)
  return jnp.einsum("pw,nowc->nopc", jnp.asarray(mw, x.dtype), x, precision=hp)


def resize_bilinear(x, size: int):
  """F.interpolate(x, (size, size), mode='bilinear', align_corners=False)."""
  _, h, w, _ = x.shape
  return _resample(x, _bilinear_matrix(h, size), _bilinear_matrix(w, size))


def adaptive_avg_pool(x, size: int):
  """F.adaptive_avg_pool2d(x, (size, size)) for [N, H, W, C]."""
  _, h, w, _ = x.shape
  return _resample(x, _adaptive_avg_matrix(h, size),
                   _adaptive_avg_matrix(w, size))


def preprocess(images, input_size: int = 112):
  """Resize to 256 if needed, crop the face region, pool to input_size.

  Args:
    images: [N, H, W, 3] in [-1, 1].
    input_size: 112 (IR-SE-50 of TreB1eN) or 224.

  Returns:
    [N, input_size, input_size, 3].
  """
  chex.assert_rank(images, 4)
  if images.shape[1:3] != (256, 256):
    images = resize_bilinear(images, 256)
  x = images[:, CROP_ROWS[0]:CROP_ROWS[1], CROP_COLS[0]:CROP_COLS[1]]
  return adaptive_avg_pool(x, input_size)


class ArcFace(nn.Module):
  """IR-SE ArcFace backbone: [N, S, S, 3] (S = input_size) -> [N, emb] raw.

  Attributes:
    depth: 50, 100 or 152.
    stem_channels: input_layer width (64).
    stage_channels: body widths (64, 128, 256, 512); smaller in tests.
    embedding_dim: 512.
  """
  depth: int = 50
  stem_channels: int = 64
  stage_channels: Sequence[int] = irse.STAGE_CHANNELS
  embedding_dim: int = 512

  @nn.compact
  def __call__(self, x):
    chex.assert_rank(x, 4)
    s = x.shape[1]
    x = irse.Stem(self.stem_channels, name="input_layer")(x, train=False)
    x = irse.IRSEBody(self.depth, tuple(self.stage_channels),
                      name="body")(x, train=False)[-1]
    chex.assert_shape(x, (None, s // 16, s // 16, self.stage_channels[-1]))
    x = ops.TorchBatchNorm(name="output_bn2d")(x, train=False)
    x = x.reshape(x.shape[0], -1)  # (h, w, c); see the module docstring
    x = ops.TorchDense(self.embedding_dim, name="output_linear")(x)
    return ops.TorchBatchNorm(name="output_bn1d")(x, train=False)


def _module(depth=50, stem_channels=64, stage_channels=irse.STAGE_CHANNELS,
            embedding_dim=512) -> ArcFace:
  return ArcFace(depth, stem_channels, tuple(stage_channels), embedding_dim)


def init_arcface(rng: jax.Array, *, input_size: int = 112, **arch):
  """Random ArcFace variables (PyTorch default init) for tests and shapes.

  Args:
    rng: PRNG key.
    input_size: 112 or 224.
    **arch: depth, stem_channels, stage_channels, embedding_dim overrides
      (defaults: the real IR-SE-50).

  Returns:
    {"params", "batch_stats"}.
  """
  x = jnp.zeros((1, input_size, input_size, 3), jnp.float32)
  return jax.jit(_module(**arch).init)(rng, x)


def _arch_from_vars(arc_vars):
  """Read the architecture back from the variables' shapes."""
  p = arc_vars["params"]
  stem = p["input_layer"]["conv"]["kernel"].shape[-1]
  body = p["body"]
  counts = [0, 0, 0, 0]
  widths = [0, 0, 0, 0]
  for name, unit in body.items():
    s = int(name[len("stage"):name.index("_")])
    counts[s] += 1
    widths[s] = unit["conv1"]["kernel"].shape[-1]
  depth = [d for d, c in irse.UNIT_COUNTS.items() if tuple(counts) == c]
  if not depth:
    raise ValueError(f"ArcFace variables hold {counts} units per stage; "
                     f"expected one of {irse.UNIT_COUNTS}")
  emb = p["output_linear"]["kernel"].shape[-1]
  fan_in = p["output_linear"]["kernel"].shape[0]
  side = math.isqrt(fan_in // widths[-1])
  return dict(depth=depth[0], stem_channels=stem,
              stage_channels=tuple(widths), embedding_dim=emb), side * 16


def id_embedding(arc_vars, images):
  """L2-normalised ArcFace embeddings of images in [-1, 1].

  Args:
    arc_vars: {"params", "batch_stats"} (init_arcface or the converter);
      the architecture and input size (112 / 224) are read from them.
    images: [N, H, W, 3] in [-1, 1]; resized to 256 first unless 256 px.

  Returns:
    [N, embedding_dim] float32, unit norm (x / ||x||, no epsilon, as the
    original).
  """
  arch, input_size = _arch_from_vars(arc_vars)
  x = preprocess(images, input_size)
  e = _module(**arch).apply(arc_vars, x)
  return e / jnp.linalg.norm(e, axis=-1, keepdims=True)


def id_loss(arc_vars, x, x_hat):
  """PadInv's ID loss: 1 - mean_n <emb(x_hat), stop_grad(emb(x))>.

  The REAL image's embedding is detached (PadInv's compute_idsim_loss
  detaches ``id_model(real_imgs)``; pSp's IDLoss does the same). DESIGN.md's
  "cos(ArcFace(x), stop_grad ArcFace(x_hat))" has the sides swapped; the
  code is followed here. Both embeddings are unit norm, so the dot product
  is the cosine.

  Args:
    arc_vars: ArcFace variables.
    x: [N, H, W, 3] real images in [-1, 1].
    x_hat: [N, H, W, 3] reconstructions in [-1, 1].

  Returns:
    Scalar loss.
  """
  real = jax.lax.stop_gradient(id_embedding(arc_vars, x))
  fake = id_embedding(arc_vars, x_hat)
  return 1.0 - jnp.mean(jnp.sum(real * fake, axis=-1))


def id_similarity(arc_vars, x, y):
  """Per-image cosine similarity of ArcFace embeddings (the ID metric): [N]."""
  return jnp.sum(id_embedding(arc_vars, x) * id_embedding(arc_vars, y),
                 axis=-1)
