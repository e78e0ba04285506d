"""Files for the `padinv` command: image inputs, all-or-nothing outputs, GIFs.

Kept apart from cli.py so the command definitions read as what they compute.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import warnings
from typing import Iterable, Sequence

import numpy as np

from padinv_jax.data import images_io
from padinv_jax.data import preprocess
from padinv_jax.storage import interrupts

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


class InputError(Exception):
  """A problem with what the user gave (path, file, option): exit code 2."""


def warn(message: str) -> None:
  print(f"padinv: warning: {message}", file=sys.stderr)


# ------------------------------------------------------------------ inputs

def collect_images(paths: Sequence[str]) -> list[str]:
  """Image files named directly or found (recursively, sorted) in folders.

  Args:
    paths: files and folders from the command line.

  Returns:
    The image file paths, in the order given (folders expanded in place).

  Raises:
    InputError: a path does not exist or a folder holds no images.
  """
  files = []
  for p in paths:
    if not os.path.exists(p):
      raise InputError(f"{p}: no such file or folder")
    if os.path.isdir(p):
      found = []
      for root, dirs, names in os.walk(p):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(root, n) for n in names
                  if n.lower().endswith(IMAGE_EXTENSIONS)]
      if not found:
        raise InputError(f"{p}: folder holds no {'/'.join(IMAGE_EXTENSIONS)} "
                         f"images")
      files += sorted(found)
    else:
      files.append(p)
  if not files:
    raise InputError("no input images given")
  return files


def unique_stems(files: Sequence[str]) -> list[str]:
  """File stems usable as output names; repeats get _2, _3, ... suffixes."""
  seen, out = {}, []
  for f in files:
    stem = os.path.splitext(os.path.basename(f))[0] or "image"
    n = seen.get(stem, 0) + 1
    seen[stem] = n
    out.append(stem if n == 1 else f"{stem}_{n}")
  return out


# Honour EXIF orientation (phone photos) unless `--ignore-exif` (cv2-style:
# the stored pixels as they are, for bit-exact training preprocessing).
EXIF_ORIENTATION = True


def _exif_orientation(data: bytes) -> int:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      with Image.open(io.BytesIO(data)) as img:
        return int(img.getexif().get(0x0112, 1))
  except Exception:  # pylint: disable=broad-except
    return 1  # decode_image reports unreadable files


def read_image(path: str, size: int) -> np.ndarray:
  """One image file -> uint8 [size, size, 3], preprocessed as in training.

  Other sizes are centre-cropped to a square and area-resized to ``size``
  (padinv_jax.data.preprocess, the training data's pipeline), with a warning.

  Raises:
    InputError: the file cannot be read or decoded.
  """
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise InputError(f"{path}: cannot read ({e.strerror or e})") from e
  orientation = _exif_orientation(data)
  if orientation != 1:
    warn(f"{path}: EXIF orientation {orientation} "
         f"{'applied' if EXIF_ORIENTATION else 'ignored (--ignore-exif)'}")
  try:
    img = preprocess.decode_image(data, path,
                                  exif_orientation=EXIF_ORIENTATION)
  except preprocess.ImageDecodeError as e:
    raise InputError(str(e)) from e
  if img.shape[:2] != (size, size):
    warn(f"{path} is {img.shape[1]}x{img.shape[0]}; centre-cropped and "
         f"area-resized to {size}x{size} as in training")
    img = preprocess.preprocess(img, size)
  return img


def read_images(paths: Sequence[str], size: int) -> np.ndarray:
  """read_image for each path -> uint8 [N, size, size, 3]."""
  return np.stack([read_image(p, size) for p in paths])


def read_direction(path: str) -> np.ndarray:
  """A direction saved with np.save (.npy), read without pickle."""
  if not os.path.isfile(path):
    raise InputError(f"{path}: no such direction file")
  try:
    d = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise InputError(f"{path}: not a .npy array file ({e})") from e
  if not isinstance(d, np.ndarray):
    raise InputError(f"{path}: expected a single array saved with np.save, "
                     f"found an archive with {list(d.files)}")
  return d


# ----------------------------------------------------------------- outputs

class Outputs:
  """All-or-nothing writes into --out.

  Files are written under a temporary sibling folder and moved into the
  output folder only when the command finishes; on any failure the
  temporary folder is removed, so --out never holds half a result. Existing
  files are never replaced without ``overwrite``; that is checked before
  the work starts (:meth:`reserve`) and again before moving.
  """

  def __init__(self, out_dir: str, overwrite: bool = False):
    self.out_dir = os.path.abspath(out_dir)
    self.overwrite = overwrite
    self.names: list[str] = []
    if os.path.exists(self.out_dir) and not os.path.isdir(self.out_dir):
      raise InputError(f"--out {out_dir} exists and is not a folder")
    self._tmp = None

  def reserve(self, names: Iterable[str]) -> None:
    """Declare the files the command will write; refuse existing ones."""
    names = list(names)
    self._check(names)
    self.names += names

  def _check(self, names) -> None:
    if self.overwrite:
      return
    clash = [n for n in names
             if os.path.lexists(os.path.join(self.out_dir, n))]
    if clash:
      more = f" and {len(clash) - 1} more" if len(clash) > 1 else ""
      raise InputError(f"{os.path.join(self.out_dir, clash[0])}{more} already"
                       f" exist(s); pass --overwrite or choose another --out")

  def path(self, name: str) -> str:
    """Where to write ``name`` now (inside the temporary folder)."""
    if name not in self.names:
      raise AssertionError(f"output {name!r} was not reserved")
    p = os.path.join(self._tmp, name)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p

  def __enter__(self):
    parent = os.path.dirname(self.out_dir)
    # The first missing ancestor, removed again if the command fails.
    self._made = None
    p = parent
    while not os.path.exists(p):
      self._made, p = p, os.path.dirname(p)
    os.makedirs(parent, exist_ok=True)
    self._tmp = tempfile.mkdtemp(
        prefix=f".{os.path.basename(self.out_dir)}.padinv-tmp-", dir=parent)
    interrupts.register_cleanup(self._discard)
    return self

  def _discard(self):
    shutil.rmtree(self._tmp, ignore_errors=True)
    if self._made:
      _remove_empty_dirs(os.path.dirname(self.out_dir), self._made)

  def __exit__(self, exc_type, exc, tb):
    interrupts.unregister_cleanup(self._discard)
    ok = False
    try:
      if exc_type is None:
        self._commit()
        ok = True
    finally:
      shutil.rmtree(self._tmp, ignore_errors=True)
      if not ok and self._made:
        _remove_empty_dirs(os.path.dirname(self.out_dir), self._made)
    return False

  def _commit(self) -> None:
    missing = [n for n in self.names
               if not os.path.exists(os.path.join(self._tmp, n))]
    if missing:
      raise AssertionError(f"outputs reserved but not written: {missing}")
    self._check(self.names)
    if not os.path.exists(self.out_dir):
      os.rename(self._tmp, self.out_dir)  # one atomic step
      os.makedirs(self._tmp)  # so the cleanup in __exit__ has a target
      return
    for n in self.names:
      dst = os.path.join(self.out_dir, n)
      os.makedirs(os.path.dirname(dst), exist_ok=True)
      os.replace(os.path.join(self._tmp, n), dst)


def _remove_empty_dirs(path: str, top: str) -> None:
  """rmdir path and its parents up to top, stopping at a non-empty one."""
  while True:
    try:
      os.rmdir(path)
    except OSError:
      return
    if path == top:
      return
    path = os.path.dirname(path)


def save_png(outs: Outputs, name: str, image) -> None:
  images_io.save_png(outs.path(name), image)


def save_gif(outs: Outputs, name: str, frames, duration_ms: int = 120) -> None:
  """Frames ([-1, 1] floats or uint8 [H, W, 3]) -> a looping GIF."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  ims = [Image.fromarray(images_io.to_uint8(f) if np.asarray(f).dtype
                         != np.uint8 else np.asarray(f)) for f in frames]
  ims[0].save(outs.path(name), save_all=True, append_images=ims[1:],
              duration=int(duration_ms), loop=0)
