"""Fashion-MNIST from its original IDX files, as 32 x 32 RGB uint8 images.

Debian's ``dataset-fashion-mnist`` package (MIT licence, Zalando Research)
installs the four IDX files under /usr/share/datasets/fashion-mnist; any
directory holding ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
works. Each 28 x 28 grey image is placed in the centre of a 32 x 32 black
canvas (2 px each side) and repeated to three channels: the generator and the
encoder see RGB, as for every other domain.

The reader trusts nothing in the header: dimensions are bounded before any
allocation and the payload must be exactly what the header declares, so a
damaged or hostile file costs at most its declared size.
"""

from __future__ import annotations

import gzip
import os
import struct
from typing import Optional

import numpy as np

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
           "Shirt", "Sneaker", "Bag", "Ankle boot")
SPLITS = {"train": "train", "test": "t10k"}
_MAX_ITEMS = 10_000_000
_MAX_SIDE = 1024
_MAX_BYTES = 1 << 31


class IdxError(ValueError):
  """A file that is not a readable IDX file of the expected kind."""


def _open(path: str):
  if path.endswith(".gz"):
    return gzip.open(path, "rb")
  return open(path, "rb")


def read_idx(path: str, ndim: int) -> np.ndarray:
  """An unsigned-byte IDX file as a uint8 array of rank ``ndim``.

  Raises:
    FileNotFoundError: no such file.
    IdxError: wrong magic, rank or type, absurd dimensions, truncated or
      trailing data, or a damaged gzip stream.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such IDX file")
  try:
    with _open(path) as f:
      head = f.read(4)
      if len(head) != 4 or head[:2] != b"\0\0":
        raise IdxError(f"{path}: not an IDX file (bad magic {head!r})")
      if head[2] != 0x08:
        raise IdxError(f"{path}: IDX type 0x{head[2]:02x}, expected unsigned "
                       "bytes (0x08)")
      if head[3] != ndim:
        raise IdxError(f"{path}: IDX rank {head[3]}, expected {ndim}")
      dims_raw = f.read(4 * ndim)
      if len(dims_raw) != 4 * ndim:
        raise IdxError(f"{path}: truncated IDX header")
      dims = struct.unpack(f">{ndim}I", dims_raw)
      if not 0 < dims[0] <= _MAX_ITEMS or any(
          not 0 < d <= _MAX_SIDE for d in dims[1:]):
        raise IdxError(f"{path}: IDX dimensions {dims} are outside what a "
                       f"dataset of images holds")
      size = int(np.prod(dims, dtype=np.int64))
      if size > _MAX_BYTES:
        raise IdxError(f"{path}: IDX declares {size} bytes (> 2 GiB)")
      data = f.read(size)
      if len(data) != size:
        raise IdxError(f"{path}: truncated: the header declares {size} bytes "
                       f"of data, the file holds {len(data)}")
      if f.read(1):
        raise IdxError(f"{path}: trailing bytes after the declared {dims}")
  except (OSError, EOFError, gzip.BadGzipFile) as e:
    if isinstance(e, FileNotFoundError):
      raise
    raise IdxError(f"{path}: damaged file ({type(e).__name__}: {e})") from None
  return np.frombuffer(data, np.uint8).reshape(dims)


def _find(directory: str, stem: str) -> str:
  for name in (f"{stem}.gz", stem):
    p = os.path.join(directory, name)
    if os.path.isfile(p):
      return p
  raise FileNotFoundError(
      f"{directory}: no {stem}[.gz]; install the Debian package "
      f"dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or "
      f"point at a folder with the four original IDX files")


def to_canvas(grey: np.ndarray, size: int = 32) -> np.ndarray:
  """[N, 28, 28] uint8 -> [N, size, size, 3] uint8, centred on black."""
  n, h, w = grey.shape
  if size < max(h, w):
    raise ValueError(f"canvas {size} is smaller than the {h}x{w} images")
  out = np.zeros((n, size, size, 3), np.uint8)
  top, left = (size - h) // 2, (size - w) // 2
  out[:, top:top + h, left:left + w, :] = grey[..., None]
  return out


def load(split: str = "train", directory: Optional[str] = None,
         size: int = 32):
  """(images [N, size, size, 3] uint8, labels [N] uint8) of one split."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
  directory = directory or DEFAULT_DIR
  stem = SPLITS[split]
  images = read_idx(_find(directory, f"{stem}-images-idx3-ubyte"), 3)
  labels = read_idx(_find(directory, f"{stem}-labels-idx1-ubyte"), 1)
  if labels.shape[0] != images.shape[0]:
    raise IdxError(f"{directory}: {images.shape[0]} {split} images but "
                   f"{labels.shape[0]} labels")
  if labels.max(initial=0) >= len(CLASSES):
    raise IdxError(f"{directory}: {split} labels outside 0..9")
  return to_canvas(images, size), labels
