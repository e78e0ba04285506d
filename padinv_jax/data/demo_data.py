"""The embedded demo dataset: images made by the frozen generator itself.

No download: `make_demo_dataset` samples z ~ N(0, I), runs
padinv_jax.models.functional.mapping + synthesize (noise_mode "const", psi 1) and
turns the output into uint8 256 x 256 RGB images, then replaces a fraction of
them by versions that the generator cannot produce exactly, the cases that
PadInv's padding space is for:
  * "shift": translated by up to 1/8 of the side in x and y (edges
    replicated), so the layout leaves the generator's fixed alignment;
  * "crop": a random square crop of 50-85 % of the side, resized back up
    (cv2-INTER_AREA upscale rule, padinv_jax.data.preprocess.resize_area);
  * "flip": turned upside down (out of range for any upright-image GAN; a
    left-right flip would not be, FFHQ itself is mirrored).
Default fractions: 50 % plain, 20 % shift, 20 % crop, 10 % flip.

A generator smaller than 256 px is upscaled with NEAREST (pixel repetition:
no new values, no blur), a larger one reduced with the same area resize as
real data. The images feed training through the same iterator as TFDS data,
from memory: `make_train_iterator(cfg, ..., source=data.ArraySource(images))`
(everything after the source -- order, mirroring, per-process split,
normalisation -- is shared).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from padinv_jax.models import config as config_lib
from padinv_jax.models import functional
from padinv_jax.data import preprocess

DEFAULT_FRACTIONS = (("plain", 0.5), ("shift", 0.2), ("crop", 0.2),
                     ("flip", 0.1))


def generator_images(gen_params, config, z, *, psi: float = 1.0,
                     batch: int = 16) -> np.ndarray:
  """Generator samples for latents z [N, z_dim] as uint8 [N, R, R, 3]."""
  gen_cfg = config_lib.gen_part(config)

  @jax.jit
  def run(params, zb):
    ws = functional.mapping(params, zb, config=gen_cfg, psi=psi)
    x = functional.synthesize(params, ws, config=gen_cfg, noise_mode="const")
    return jnp.clip(jnp.round((x + 1) * 127.5), 0, 255).astype(jnp.uint8)

  out = [np.asarray(run(gen_params, z[i:i + batch]))
         for i in range(0, len(z), batch)]
  return np.concatenate(out, axis=0)


def to_resolution(images: np.ndarray, resolution: int) -> np.ndarray:
  """Nearest upscale by an integer factor, or area downscale, to R x R."""
  r = images.shape[1]
  if r == resolution:
    return images
  if r < resolution:
    if resolution % r:
      raise ValueError(f"cannot upscale {r} px to {resolution} px by pixel "
                       f"repetition; use a power-of-two generator")
    f = resolution // r
    return np.repeat(np.repeat(images, f, axis=1), f, axis=2)
  return np.stack([preprocess.resize_area(x, resolution, resolution)
                   for x in images])


def shift_image(img, rng):
  """Translated by up to 1/8 of the side in x and y (not 0), edges replicated."""
  s = img.shape[0]
  m = max(1, s // 8)
  dy, dx = rng.integers(-m, m + 1, size=2)
  if dy == 0 and dx == 0:
    dx = m
  pad = np.pad(img, ((m, m), (m, m), (0, 0)), mode="edge")
  return pad[m - dy:m - dy + s, m - dx:m - dx + s]


def crop_image(img, rng):
  """A random square crop of 50-85 % of the side, area-resized back up."""
  s = img.shape[0]
  c = int(rng.integers(int(0.5 * s), int(0.85 * s) + 1))
  y, x = rng.integers(0, s - c + 1, size=2)
  return preprocess.resize_area(np.ascontiguousarray(img[y:y + c, x:x + c]),
                                s, s)


def _flip(img, rng):
  del rng
  return img[::-1]


_TRANSFORMS = {"shift": shift_image, "crop": crop_image, "flip": _flip}


def make_demo_dataset(gen_params, config, num_images: int, seed: int = 0, *,
                      resolution: int = 256, psi: float = 1.0,
                      fractions=DEFAULT_FRACTIONS, return_kinds: bool = False):
  """Images from the generator plus out-of-range edits, uint8 [N, R, R, 3].

  Args:
    gen_params: generator variables ({"params", "buffers"}).
    config: ModelConfig or its generator part.
    num_images: N.
    seed: seeds z (jax.random) and the edits (numpy).
    resolution: output side (256: the encoder's input).
    psi: truncation of the samples (1.0 = none).
    fractions: ((kind, fraction), ...) over "plain", "shift", "crop",
      "flip"; counts are rounded and the rest is "plain".
    return_kinds: also return the kind of each image.

  Returns:
    uint8 [N, R, R, 3] (and a list of N kinds when return_kinds).
  """
  gen_cfg = config_lib.gen_part(config)
  z = jax.random.normal(jax.random.PRNGKey(seed), (num_images, gen_cfg.z_dim))
  images = to_resolution(generator_images(gen_params, gen_cfg, z, psi=psi),
                         resolution)
  rng = np.random.default_rng(seed)
  kinds = []
  for kind, frac in fractions:
    if kind != "plain" and kind not in _TRANSFORMS:
      raise ValueError(f"unknown demo image kind {kind!r}; known: plain, "
                       f"{', '.join(_TRANSFORMS)}")
    kinds += [kind] * int(round(frac * num_images))
  kinds = (kinds + ["plain"] * num_images)[:num_images]
  kinds = [kinds[i] for i in rng.permutation(num_images)]
  out = np.empty_like(images)
  for i, kind in enumerate(kinds):
    out[i] = images[i] if kind == "plain" else _TRANSFORMS[kind](images[i], rng)
  return (out, kinds) if return_kinds else out
