"""Held-out images with layouts a generator never made: the demo's and the study's.

Four kinds of test image, made from real images (uint8 [N, S, S, 3]):
  * "plain": as they are;
  * "shift": translated by up to 1/8 of the side in x and y, never 0 (edges
    replicated; padinv_jax.data.demo_data's rule);
  * "crop": a random square crop of 50-85 % of the side, area-resized back
    up (demo_data's rule): a zoomed, cut-off object;
  * "side": image i and image i+1 (cyclically) side by side, each
    area-shrunk to half the side and centred vertically on a black canvas:
    two objects where the training data always has one.
Every kind is a pure function of (images, seed), so a study is repeatable.
"""

from __future__ import annotations

import numpy as np

from padinv_jax.data import demo_data
from padinv_jax.data import preprocess

KINDS = ("plain", "shift", "crop", "side")


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
  """Two uint8 [S, S, 3] images as one: each at half size, on black."""
  s = left.shape[0]
  h = s // 2
  out = np.zeros_like(left)
  top = (s - h) // 2
  for j, img in enumerate((left, right)):
    small = preprocess.resize_area(np.ascontiguousarray(img), h, h)
    out[top:top + h, j * h:(j + 1) * h] = small
  return out


def make_kind(images: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
  """Test images of one kind made from ``images`` (see the module doc).

  Args:
    images: uint8 [N, S, S, 3].
    kind: one of KINDS.
    seed: seeds the shifts and crops (numpy default_rng).

  Returns:
    uint8 [N, S, S, 3].
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.dtype != np.uint8:
    raise ValueError(f"make_kind expects uint8 [N, S, S, 3], got "
                     f"{images.dtype} {images.shape}")
  if kind not in KINDS:
    raise ValueError(f"unknown image kind {kind!r}; known: {', '.join(KINDS)}")
  if kind == "plain":
    return images.copy()
  if kind == "side":
    partner = np.roll(images, -1, axis=0)
    return np.stack([side_by_side(a, b) for a, b in zip(images, partner)])
  rng = np.random.default_rng(seed)
  edit = demo_data.shift_image if kind == "shift" else demo_data.crop_image
  return np.stack([edit(img, rng) for img in images])
