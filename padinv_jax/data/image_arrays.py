"""Small image datasets held in memory, with batches that are a pure function of the step.

For GAN training at small resolutions (Fashion-MNIST: 60k x 32 x 32 x 3 is
184 MB): the whole split is one uint8 array, and the batch of step s is
rows [s B, (s + 1) B) of the concatenated per-epoch permutations drawn from
(seed, epoch). Resuming at step s therefore reads exactly the batches an
uninterrupted run would, with no iterator state to save. Each process takes
its contiguous slice of the global batch.
"""

from __future__ import annotations

import os

import numpy as np

from padinv_jax.data import fashion_mnist


class ImageArray:
  """uint8 images [N, R, R, 3] with step-indexed random batches."""

  def __init__(self, images: np.ndarray, seed: int = 0, mirror: bool = False):
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
      raise ValueError(f"expected uint8 images [N, R, R, 3], got "
                       f"{images.dtype} {images.shape}")
    if images.shape[0] < 1:
      raise ValueError("the dataset holds no images")
    self.images, self.seed, self.mirror = images, int(seed), bool(mirror)

  @property
  def num_images(self) -> int:
    return self.images.shape[0] * (2 if self.mirror else 1)

  def _epoch_order(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([self.seed, epoch]).permutation(
        self.num_images)

  def indices(self, step: int, batch: int) -> np.ndarray:
    """The global batch of ``step`` as dataset indices (>= N: mirrored)."""
    n = self.num_images
    start = step * batch
    out, pos = [], start
    while pos < start + batch:
      epoch, offset = divmod(pos, n)
      take = min(n - offset, start + batch - pos)
      out.append(self._epoch_order(epoch)[offset:offset + take])
      pos += take
    return np.concatenate(out)

  def batch(self, step: int, batch: int, process_index: int = 0,
            per_process: int | None = None) -> np.ndarray:
    """This process's slice of the global batch of ``step``, uint8."""
    idx = self.indices(step, batch)
    if per_process is not None:
      idx = idx[process_index * per_process:(process_index + 1) * per_process]
    n = self.images.shape[0]
    x = self.images[idx % n]
    flip = idx >= n
    if flip.any():
      x = x.copy()
      x[flip] = x[flip][:, :, ::-1]
    return x


def toy_images(n: int, resolution: int, seed: int = 0) -> np.ndarray:
  """Bright discs of random size and place on black: a GAN smoke-test domain."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:resolution, :resolution] + 0.5
  out = np.zeros((n, resolution, resolution, 3), np.uint8)
  for i in range(n):
    cy, cx = rng.uniform(0.3, 0.7, 2) * resolution
    r = rng.uniform(0.15, 0.3) * resolution
    colour = rng.integers(128, 256, 3)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    out[i][disc] = colour
  return out


def build(data_cfg, resolution: int, seed: int = 0) -> ImageArray:
  """The training images a GAN config names (source fashion_mnist|npz|toy)."""
  src = data_cfg.source
  if src == "fashion_mnist":
    images, _ = fashion_mnist.load("train", data_cfg.path or None, resolution)
  elif src == "npz":
    if not os.path.isfile(data_cfg.path):
      raise FileNotFoundError(f"data.path={data_cfg.path!r}: no such .npz "
                              "(expected one with 'images' [N, R, R, 3] uint8)")
    with np.load(data_cfg.path, allow_pickle=False) as z:
      if "images" not in z.files:
        raise ValueError(f"{data_cfg.path}: no 'images' array (found "
                         f"{z.files})")
      images = z["images"]
  elif src == "toy":
    images = toy_images(data_cfg.num_toy_images, resolution, seed)
  else:
    raise ValueError(f"data.source must be fashion_mnist, npz or toy, got "
                     f"{src!r}")
  if images.ndim != 4 or images.shape[1:3] != (resolution, resolution):
    raise ValueError(f"{src}: images are {images.shape}, the generator makes "
                     f"{resolution} x {resolution}")
  return ImageArray(images, seed, data_cfg.mirror)
