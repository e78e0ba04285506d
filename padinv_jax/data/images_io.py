"""Image value conversions and PNG writing shared by training, apps and CLI."""

from __future__ import annotations

import os

import numpy as np


def to_uint8(images) -> np.ndarray:
  """[-1, 1] floats -> uint8 [0, 255] (clipped, rounded)."""
  x = np.asarray(images, np.float32)
  return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def to_float(images) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1]; float input is returned as float32."""
  x = np.asarray(images)
  if x.dtype == np.uint8:
    return x.astype(np.float32) / 255.0 * 2.0 - 1.0
  return x.astype(np.float32)


def save_png(path: str, image) -> None:
  """Writes an [H, W, 3] uint8 (or [-1, 1] float) image as PNG."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  x = np.asarray(image)
  if x.dtype != np.uint8:
    x = to_uint8(x)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(x).save(path)


def make_grid(rows) -> np.ndarray:
  """Tiles a list of rows, each a list of [H, W, 3] images, into one image.

  Images of a smaller size are nearest-upscaled to the largest one so
  inputs (256 px) and reconstructions (any size) can share a grid.
  """
  size = max(int(np.shape(im)[0]) for row in rows for im in row)
  out = []
  for row in rows:
    tiles = []
    for im in row:
      im = np.asarray(im)
      if im.dtype != np.uint8:
        im = to_uint8(im)
      k = size // im.shape[0]
      if k > 1:
        im = im.repeat(k, 0).repeat(k, 1)
      elif im.shape[0] > size:
        im = im[::im.shape[0] // size, ::im.shape[0] // size]
      tiles.append(im)
    out.append(np.concatenate(tiles, axis=1))
  return np.concatenate(out, axis=0)
