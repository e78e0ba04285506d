"""Codes and their conventions: the (ws, paddings) pair, layer masks, steps, .npz files.

A *code* is the pair ``(ws, paddings)`` that :func:`padinv_jax.invert`
returns: ws [N, L, w_dim] (L = the encoder's num_codes, >= the generator's
num_ws; extra codes are ignored by the generator) and paddings a dict
{"const": p0, "layer0": ..., "layer2": ...} of [N, S, S, C] maps ({} for an
encoder without the padding space). Functions that add a step axis return
ws [K, N, L, w_dim] and maps [K, N, S, S, C]; :func:`flatten_steps` turns that
into one batch of K * N for synthesize. Codes files (.npz, DESIGN.md section
8) are the one part of the applications that touches disk.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from typing import Mapping, Optional, Sequence, Union

import jax.numpy as jnp
import numpy as np


SPACES = ("w", "padding", "both")
EDIT_SPACES = ("w", "padding", "both")

Layers = Union[None, slice, Sequence[int]]


def _check_space(space: str, allowed=SPACES) -> None:
  if space not in allowed:
    raise ValueError(f"space must be one of {allowed}, got {space!r}")


def _check_same_keys(pads_a: Mapping, pads_b: Mapping, what: str) -> None:
  if set(pads_a) != set(pads_b):
    raise ValueError(f"{what}: both codes must have the same padding maps, "
                     f"got {sorted(pads_a)} and {sorted(pads_b)}")


def layer_mask(num_codes: int, layers: Layers = None) -> np.ndarray:
  """[num_codes] float32 mask: 1 on the selected code indices, else 0.

  Args:
    num_codes: length of the code axis (ws.shape[1]).
    layers: None (all), a slice (e.g. slice(0, 8): codes 0..7) or a
      sequence of code indices.

  Returns:
    np.ndarray [num_codes] of 0.0 / 1.0 (a trace-time constant).
  """
  mask = np.zeros((num_codes,), np.float32)
  if layers is None:
    mask[:] = 1.0
    return mask
  if isinstance(layers, slice):
    idx = list(range(num_codes))[layers]
  else:
    idx = [int(i) for i in layers]
  bad = [i for i in idx if not 0 <= i < num_codes]
  if bad or not idx:
    raise ValueError(f"layers {layers!r} select {idx}: expected indices in "
                     f"0..{num_codes - 1} (the codes' layer axis)")
  mask[idx] = 1.0
  return mask


def lerp_weights(steps: int) -> np.ndarray:
  """The K interpolation weights 0 = t_0 < ... < t_{K-1} = 1 (float32)."""
  if int(steps) < 2:
    raise ValueError(f"steps must be at least 2 (both endpoints), got {steps}")
  return np.linspace(0.0, 1.0, int(steps), dtype=np.float32)


def _lerp(a, b, t):
  """(1 - t) a + t b over a new leading step axis; exact at t = 0 and 1.

  (1 - t) a + t b, unlike a + t (b - a), returns a and b bit for bit at the
  endpoints (0 * x = 0 and x + 0 = x in IEEE arithmetic for finite x).
  """
  t = jnp.asarray(t, jnp.float32).reshape((-1,) + (1,) * a.ndim)
  return (1.0 - t) * a[None] + t * b[None]


def _repeat_steps(x, steps: int):
  return jnp.broadcast_to(x[None], (steps,) + x.shape)


def flatten_steps(codes):
  """(ws [K, N, ...], maps [K, N, ...]) -> (ws [K N, ...], maps [K N, ...])."""
  ws, pads = codes
  flat = lambda x: x.reshape((-1,) + x.shape[2:])
  return flat(ws), {k: flat(v) for k, v in pads.items()}


def save_codes(path: str, ws, paddings: Mapping, *, num_ws: int,
               pad_layer_num: Optional[int] = None) -> None:
  """Write codes as .npz: ws, pad_<key>, num_ws, pad_layer_num (DESIGN 8).

  Arrays are stored as float32 exactly as given, so :func:`load_codes`
  returns them bit for bit.

  Args:
    path: file to write (written as given; no ".npz" is appended).
    ws: [N, L, w_dim].
    paddings: {key: [N, S, S, C]} (may be empty).
    num_ws: the generator's num_ws.
    pad_layer_num: number of padded layers P; default the number of "layer"
      maps present.
  """
  arrays = {"ws": np.asarray(ws, np.float32)}
  if arrays["ws"].ndim != 3:
    raise ValueError(f"save_codes: ws must be [N, L, w_dim], got "
                     f"{arrays['ws'].shape}")
  for k, v in paddings.items():
    arrays[f"pad_{k}"] = np.asarray(v, np.float32)
  if pad_layer_num is None:
    pad_layer_num = sum(1 for k in paddings if k != "const")
  arrays["num_ws"] = np.asarray(int(num_ws), np.int64)
  arrays["pad_layer_num"] = np.asarray(int(pad_layer_num), np.int64)
  with open(path, "wb") as f:
    np.savez(f, **arrays)


# Inflated size allowed per byte of file: float codes barely compress, so a
# file declaring far more is a bomb (a 1.5 MB .npz can declare 1.5 GB).
MAX_INFLATION = 50
MAX_NPZ_BYTES = 8 << 30


def read_npz(path: str, max_inflation: int = MAX_INFLATION) -> dict:
  """An .npz of plain numeric arrays, bounded by what the file really holds.

  Each member's npy header is read first; the declared sizes must fit
  ``max_inflation`` x the file size (+ 64 MiB) and every member must hold
  exactly its declared bytes. Object arrays are refused.

  Raises:
    ValueError: one line naming the file and what is wrong with it.
  """
  size = os.path.getsize(path)
  budget = min(max_inflation * size + (64 << 20), MAX_NPZ_BYTES)
  hint = "write codes with `padinv invert` or padinv_jax.save_codes"
  arrays, total = {}, 0
  try:
    with zipfile.ZipFile(path) as zf:
      for info in zf.infolist():
        if not info.filename.endswith(".npy"):
          raise ValueError(f"{path}: member {info.filename!r} is not an "
                           f".npy array; {hint}")
        with zf.open(info) as f:
          version = np.lib.format.read_magic(f)
          if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
          else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
          if dtype.hasobject:
            raise ValueError(f"{path}: {info.filename} holds Python objects; "
                             f"refused ({hint})")
          nbytes = math.prod(shape) * dtype.itemsize
          total += nbytes
          if total > budget:
            raise ValueError(
                f"{path}: its arrays declare {total} bytes, far more than a "
                f"{size}-byte file holds (a damaged or hostile file); {hint}")
          data = bytearray()
          while len(data) < nbytes:
            chunk = f.read(min(1 << 20, nbytes - len(data)))
            if not chunk:
              raise ValueError(f"{path}: {info.filename} is truncated; "
                               f"{hint}")
            data += chunk
          arr = np.frombuffer(data, dtype)
          arrays[info.filename[:-len(".npy")]] = arr.reshape(
              shape, order="F" if fortran else "C")
  except ValueError as e:
    msg = str(e)
    raise ValueError(msg if msg.startswith(path) else
                     f"{path} is not a readable .npz codes file ({msg}); "
                     f"{hint}") from None
  except (zipfile.BadZipFile, zlib.error, EOFError, OSError,
          NotImplementedError, OverflowError, RuntimeError) as e:
    # (damaged headers: unknown methods, offsets past the file, an
    # "encrypted" flag)
    raise ValueError(f"{path} is not a readable .npz codes file (damaged: "
                     f"{type(e).__name__}: {e}); {hint}") from None
  return arrays


def load_codes(path: str):
  """Read a codes .npz written by :func:`save_codes` (or ``padinv invert``).

  Args:
    path: the .npz file.

  Returns:
    (ws [N, L, w_dim] float32, paddings {key: [N, S, S, C]}, meta) with meta
    {"num_ws": int, "pad_layer_num": int}.

  Raises:
    FileNotFoundError: no such file.
    ValueError: not a codes file (named keys missing or malformed).
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"codes file {path} does not exist")
  arrays = read_npz(path)
  missing = [k for k in ("ws", "num_ws", "pad_layer_num") if k not in arrays]
  if missing:
    raise ValueError(f"{path} is not a padinv codes file: keys {missing} are "
                     f"missing (found {sorted(arrays)})")
  ws = arrays.pop("ws")
  meta = {}
  for key, hi in (("num_ws", 64), ("pad_layer_num", 5)):
    v = arrays.pop(key)
    if v.shape != () or v.dtype.kind not in "iu" or not 0 <= int(v) <= hi:
      raise ValueError(f"{path}: {key} must be an integer in 0..{hi}, found "
                       f"{v.dtype} {v.shape}")
    meta[key] = int(v)
  if ws.dtype.kind != "f" or any(v.dtype.kind != "f" for k, v in
                                 arrays.items() if k.startswith("pad_")):
    raise ValueError(f"{path}: codes must be floating-point arrays")
  pads = {k[len("pad_"):]: v for k, v in arrays.items()
          if k.startswith("pad_")}
  if ws.ndim != 3:
    raise ValueError(f"{path}: ws must be [N, L, w_dim], found {ws.shape}")
  for k, v in pads.items():
    if v.ndim != 4 or v.shape[0] != ws.shape[0]:
      raise ValueError(f"{path}: pad_{k} must be [N={ws.shape[0]}, S, S, C], "
                       f"found {v.shape}")
  return ws, pads, meta
