"""LPIPS v0.1 (Zhang et al. 2018) with an AlexNet or VGG16 trunk, NHWC.

Semantics of richzhang/PerceptualSimilarity (``lpips.LPIPS(net=...)``) and of
the copy PadInv trains with (models/lpips): inputs in [-1, 1] are shifted and
scaled by (-.030, -.088, -.188) / (.458, .448, .450); the trunk's ReLU outputs
relu1..relu5 are unit-normalised over channels (x / (||x|| + 1e-10)), their
squared difference goes through a learned 1x1 conv to one channel (no bias;
the dropout before it is identity at eval), is averaged over space and summed
over the five layers.

Trunks (torchvision ``features`` with their indices):
  alex: conv 0 (11x11 stride 4 pad 2) relu 1 | pool 2 | conv 3 (5x5 pad 2)
        relu 4 | pool 5 | conv 6 relu 7 | conv 8 relu 9 | conv 10 relu 11;
        taps after relu 1, 4, 7, 9, 11; max-pools 3x3 stride 2, VALID.
  vgg:  13 3x3 convs (pad 1) at indices 0 2 5 7 10 12 14 17 19 21 24 26 28,
        2x2 max-pools between stages; taps relu1_2, relu2_2, relu3_3, relu4_3,
        relu5_3 (after indices 3, 8, 15, 22, 29). This is LPIPS-VGG; PadInv's
        own lpips_net='vgg' used a different perceptual model and is not
        reproduced here.

Parameter tree (``lpips_vars["params"]``), named after the official keys so
a converter maps them by rename and layout change only:
  features_{i}/{kernel [kh, kw, Cin, Cout], bias [Cout]}
      <- torchvision features.{i}.weight (OIHW, transpose 2,3,1,0), .bias
  lin{k}/kernel [1, 1, C_k, 1]
      <- lpips lin{k}.model.1.weight [1, C_k, 1, 1] (transpose 2,3,1,0)
"""

from __future__ import annotations

from typing import Optional

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from padinv_jax.models import ops

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)

# (torchvision features index, out channels, kernel, stride, padding) per
# conv, and the pool that precedes it ("max3" = 3x3/2, "max2" = 2x2/2).
_ALEX = (
    (0, 64, 11, 4, 2, None),
    (3, 192, 5, 1, 2, "max3"),
    (6, 384, 3, 1, 1, "max3"),
    (8, 256, 3, 1, 1, None),
    (10, 256, 3, 1, 1, None),
)
_ALEX_TAPS = (0, 3, 6, 8, 10)  # the relu after these convs is tapped

_VGG_CH = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
           512, 512, 512)


def _vgg_layers():
  layers, idx, pool = [], 0, None
  for v in _VGG_CH:
    if v == "M":
      pool, idx = "max2", idx + 1
      continue
    layers.append((idx, v, 3, 1, 1, pool))
    pool, idx = None, idx + 2  # conv + relu
  return tuple(layers)


_VGG = _vgg_layers()
_VGG_TAPS = (2, 7, 14, 21, 28)  # relu1_2 ... relu5_3 follow these convs

NETS = {"alex": (_ALEX, _ALEX_TAPS), "vgg": (_VGG, _VGG_TAPS)}


def tap_channels(net: str = "alex") -> tuple[int, ...]:
  """Channels of the five tapped layers (the widths of lin0..lin4)."""
  layers, taps = _net(net)
  return tuple(c for i, c, *_ in layers if i in taps)


def _net(net: str):
  if net not in NETS:
    raise ValueError(f"LPIPS net must be one of {sorted(NETS)}, got {net!r}")
  return NETS[net]


def _max_pool(x, size: int):
  return nn.max_pool(x, (size, size), strides=(2, 2), padding="VALID")


def unit_normalize(x, eps: float = 1e-10):
  """x / (||x||_channels + eps), as lpips.normalize_tensor."""
  return x / (jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True)) + eps)


class LPIPS(nn.Module):
  """LPIPS distance between two image batches (see the module docstring).

  Attributes:
    net: "alex" (the PadInv loss and metric) or "vgg".
  """
  net: str = "alex"

  @nn.compact
  def __call__(self, x, y):
    chex.assert_rank(x, 4)
    chex.assert_equal_shape([x, y])
    chex.assert_axis_dimension(x, -1, 3)
    layers, taps = _net(self.net)
    n = x.shape[0]
    shift = jnp.asarray(SHIFT, x.dtype)
    scale = jnp.asarray(SCALE, x.dtype)
    # One trunk pass over both batches: per-sample ops only, so identical.
    h = (jnp.concatenate([x, y], axis=0) - shift) / scale
    feats = []
    for idx, cout, k, stride, pad, pool in layers:
      if pool == "max3":
        h = _max_pool(h, 3)
      elif pool == "max2":
        h = _max_pool(h, 2)
      h = ops.TorchConv(cout, kernel_size=k, stride=stride, padding=pad,
                        name=f"features_{idx}")(h)
      h = jax.nn.relu(h)
      if idx in taps:
        feats.append(h)
    total = jnp.zeros((n,), jnp.float32)
    for k, f in enumerate(feats):
      d = jnp.square(unit_normalize(f[:n]) - unit_normalize(f[n:]))
      d = ops.TorchConv(1, kernel_size=1, use_bias=False, name=f"lin{k}")(d)
      total = total + jnp.mean(d, axis=(1, 2, 3)).astype(jnp.float32)
    return total  # [N]


def init_lpips(rng: jax.Array, net: str = "alex", image_size: int = 64):
  """Random LPIPS variables (PyTorch default init) for tests and shapes.

  Real use loads converted weights (padinv_jax.convert.loss_keys); this gives
  the tree those must match.

  Args:
    rng: PRNG key.
    net: "alex" or "vgg".
    image_size: side of the dummy images used to trace the module (the
      parameters do not depend on it; AlexNet needs >= 63, VGG >= 32).

  Returns:
    {"params": {...}} as described in the module docstring.
  """
  x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  return jax.jit(LPIPS(net).init)(rng, x, x)


def lpips_distance(lpips_vars, x, y, net: str = "alex"):
  """Per-image LPIPS distance.

  Args:
    lpips_vars: {"params": ...} from init_lpips or a converter.
    x: [N, H, W, 3] images in [-1, 1].
    y: [N, H, W, 3] images in [-1, 1].
    net: "alex" or "vgg"; must match the variables.

  Returns:
    [N] float32 distances (the training loss is their batch mean).
  """
  return LPIPS(net).apply(lpips_vars, x, y)


def lpips_loss(lpips_vars, x, y, net: str = "alex",
               reduce: Optional[str] = "mean"):
  """Batch-mean LPIPS (PadInv: sum over layers and batch / N).

  Args:
    lpips_vars: LPIPS variables.
    x: [N, H, W, 3] in [-1, 1].
    y: [N, H, W, 3] in [-1, 1].
    net: "alex" or "vgg".
    reduce: "mean" or None (per image).

  Returns:
    Scalar (or [N] when reduce is None).
  """
  d = lpips_distance(lpips_vars, x, y, net)
  return jnp.mean(d) if reduce == "mean" else d
