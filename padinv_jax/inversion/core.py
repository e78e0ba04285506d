"""Inversion as pure functions: images -> (W+, paddings) -> reconstructions.

``params`` is the whole-model variables dict::

  {"generator": {"params": ..., "buffers": ...},        # read-only here
   "encoder": {"params": ...,
               "batch_stats": ...,   # BatchNorm running statistics: one
                                     # {"mean", "var"} per BN layer, at the
                                     # same path as the layer's params
               "buffers": {"w_avg": ...}}}   # the encoder's own w_avg

Inversion runs the encoder in eval mode: BatchNorm normalises with the running
statistics in ``params["encoder"]["batch_stats"]`` and never updates them
(training updates them through its own step), so these functions are pure and
``params`` is returned to nobody. The generator is only read.

``config`` is the whole ModelConfig (``.generator`` and ``.encoder``); it is
read at trace time, so close over it (functools.partial) when jitting.
"""

from __future__ import annotations

from typing import Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np

from padinv_jax.models import functional
from padinv_jax.evaluation import metrics

RESIZE_METHODS = ("area", None)
_UINT8_TO_FLOAT = (np.arange(256, dtype=np.float32) / np.float32(255)
                   * np.float32(2) - np.float32(1))


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] pixel-area weights for shrinking n_in pixels to n_out.

  Output pixel i covers [i s, (i + 1) s) input pixels (s = n_in / n_out) and
  averages them weighted by overlap: cv2.INTER_AREA's and PIL's BOX rule
  when shrinking, an exact k x k mean for integer factors.
  """
  s = n_in / n_out
  lo = np.arange(n_out)[:, None] * s
  hi = lo + s
  j = np.arange(n_in)[None, :]
  overlap = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None)
  return (overlap / s).astype(np.float32)


def resize_images(images, size: int):
  """Resize square [N, H, H, C] float images to [N, size, size, C].

  Shrinking uses pixel-area averaging (the training data's area resize, and
  an exact average pool for integer factors); enlarging uses bilinear
  interpolation with half-pixel centres (jax.image.resize "linear"), since
  area weights are undefined there.

  Args:
    images: [N, H, H, C] float.
    size: output side.

  Returns:
    [N, size, size, C] float32.
  """
  chex.assert_rank(images, 4)
  h = images.shape[1]
  x = images.astype(jnp.float32)
  if h == size:
    return x
  if h < size:
    return jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), "linear")
  m = jnp.asarray(_area_matrix(h, size))
  hi = jax.lax.Precision.HIGHEST
  x = jnp.einsum("oh,nhwc->nowc", m, x, precision=hi)
  return jnp.einsum("pw,nowc->nopc", m, x, precision=hi)


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def check_images(images, size: int = 256, resize: Optional[str] = "area"):
  """Raise ValueError unless ``images`` is something prepare_images accepts.

  Checks rank, channels, dtype and size without computing anything; when the
  values are concrete (not traced under jit) float images whose values are
  far outside [-1, 1] are refused too, since they are almost certainly
  [0, 255] pixels passed as floats.

  Args:
    images: array; see :func:`prepare_images`.
    size: the encoder's input side.
    resize: "area" or None (then any other size is refused).

  Returns:
    ``images`` as an array (lists are converted with np.asarray).
  """
  if resize not in RESIZE_METHODS:
    raise ValueError(f"resize must be one of {RESIZE_METHODS}, got {resize!r}")
  if not hasattr(images, "dtype"):
    images = np.asarray(images)
  shape = tuple(images.shape)
  if len(shape) not in (3, 4):
    raise ValueError(
        f"images must be [N, H, W, 3] or a single [H, W, 3] image, got rank "
        f"{len(shape)} with shape {shape}")
  if shape[-1] != 3:
    hint = ""
    if shape[-3] == 3:
      hint = " (they look channels-first: transpose to [N, H, W, 3])"
    elif shape[-1] in (1, 4):
      hint = (" (convert grayscale / RGBA to RGB, e.g. with PIL's "
              ".convert('RGB'))")
    raise ValueError(f"images must have 3 (RGB) channels in the last axis, "
                     f"got shape {shape}{hint}")
  dtype = np.dtype(images.dtype)
  if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
    raise ValueError(f"images must be uint8 in [0, 255] or float in [-1, 1], "
                     f"got dtype {dtype}")
  h, w = shape[-3], shape[-2]
  if h != w:
    raise ValueError(f"images must be square (the encoder takes {size} x "
                     f"{size}), got {h} x {w}: crop the centre square first")
  if h != size and resize is None:
    raise ValueError(f"images must be {size} x {size}, got {h} x {w} "
                     f"(pass resize='area' to resize them)")
  if dtype != np.uint8 and _is_concrete(images) and images.size:
    peak = float(np.max(np.abs(np.asarray(images, np.float32))))
    if not np.isfinite(peak) or peak > 2.0:
      raise ValueError(
          f"float images must be in [-1, 1], found values up to {peak:g}; "
          f"pass uint8 [0, 255] pixels or scale floats by x / 127.5 - 1")
  return images


def prepare_images(images, size: int = 256, resize: Optional[str] = "area"):
  """Validate images and bring them to the encoder's input: float32 [-1, 1].

  Accepted inputs: ``[N, H, W, 3]`` or a single ``[H, W, 3]`` image, either
  uint8 in [0, 255] (mapped by x / 255 * 2 - 1, the training data's scaling)
  or float in [-1, 1]. Other square sizes are resized to ``size`` with
  :func:`resize_images` (area averaging when shrinking, bilinear when
  enlarging) unless ``resize`` is None, which raises instead. Non-square
  images are refused: crop them to a square first (the training data takes
  the centre square). See :func:`check_images` for what is refused.

  Args:
    images: array-like, see above.
    size: the encoder's input side (config.encoder.input_size).
    resize: "area" (default) or None (raise on any other size).

  Returns:
    [N, size, size, 3] float32.
  """
  images = check_images(images, size, resize)
  if images.ndim == 3:
    images = images[None]
  if np.dtype(images.dtype) == np.uint8:
    # A 256-entry table computed on the host (x / 255 * 2 - 1 in float32, as
    # the training data does it): XLA may turn the division into a multiply
    # by the reciprocal, which is 1 ulp off for some values.
    x = jnp.asarray(_UINT8_TO_FLOAT)[jnp.asarray(images)]
  else:
    x = jnp.asarray(images).astype(jnp.float32)
  if x.shape[1] != size:
    x = resize_images(x, size)
  chex.assert_shape(x, (images.shape[0], size, size, 3))
  return x


def _encoder_parts(params, config, dtype=jnp.float32):
  if "encoder" not in config or config.encoder is None:
    raise ValueError("this model config has no encoder part (a generator-only"
                     " model cannot invert images); load or build a model "
                     "with an encoder")
  if "encoder" not in params:
    raise ValueError("params has no 'encoder' entry (a generator-only model "
                     "cannot invert images); pass {'generator': ..., "
                     "'encoder': ...}")
  # Imported here so generator-only code paths never need the encoder module.
  from padinv_jax.models import encoder as encoder_lib
  encoder_lib.check_compatible(config)
  return config.encoder, encoder_lib.build_encoder(config.encoder,
                                                   dtype=dtype)


def invert(params, images, *, config, resize: Optional[str] = "area",
           dtype=jnp.float32):
  """Encode images into W+ codes and padding maps (eval mode).

  Args:
    params: {"generator": ..., "encoder": {"params", "batch_stats",
      "buffers"}}; only the encoder part is used (see the module docstring
      for where the BatchNorm statistics live).
    images: [N, H, W, 3] (or [H, W, 3]) uint8 in [0, 255] or float in
      [-1, 1]; see :func:`prepare_images` for sizes other than the
      encoder's input size.
    config: the whole ModelConfig (its ``.encoder`` part is used).
    resize: "area" or None, as in :func:`prepare_images`.
    dtype: compute dtype of the encoder's convolutions, float32 (default)
      or bfloat16 (kernels, BatchNorm and everything between the convs stay
      float32; README "bfloat16 in the encoder" gives what it costs).

  Returns:
    (ws [N, num_codes, w_dim] float32, paddings): paddings is a dict
    {"const": p0, "layer0": ..., "layer2": ...} of [N, S, S, C] maps, or {}
    for an encoder without the padding space (use_padding_space=False, pSp).
  """
  enc_cfg, enc = _encoder_parts(params, config, dtype)
  x = prepare_images(images, int(enc_cfg.input_size), resize)
  ws, paddings = enc.apply(params["encoder"], x, train=False)
  chex.assert_rank(ws, 3)
  chex.assert_equal(ws.shape[0], x.shape[0])
  return ws, dict(paddings or {})


def reconstruct(params, images, *, config,
                downsample: Optional[str] = "avgpool",
                noise_mode: str = "const", rng=None,
                resize: Optional[str] = "area"):
  """G(E(x)): invert the images and synthesise them again.

  Args:
    params: {"generator": ..., "encoder": ...} (see the module docstring).
    images: as in :func:`invert`.
    config: the whole ModelConfig.
    downsample: how outputs larger than the encoder's input size (256) are
      reduced to it: "avgpool" (k x k average pool, as the training losses
      do), "nearest" (pixel (k i, k j), as the original's evaluation did) or
      None (keep the generator's resolution). See metrics.downsample.
    noise_mode: "const" | "random" | "none" (passed to synthesize).
    rng: PRNG key for noise_mode="random".
    resize: "area" or None, as in :func:`prepare_images`.

  Returns:
    [N, r, r, 3] float32 images, not clamped; r = min(R, input size) unless
    downsample is None (then r = R).
  """
  ws, paddings = invert(params, images, config=config, resize=resize)
  out = functional.synthesize(params["generator"], ws, paddings or None,
                              config=config, noise_mode=noise_mode, rng=rng)
  return metrics.downsample(out, int(config.encoder.input_size), downsample)
