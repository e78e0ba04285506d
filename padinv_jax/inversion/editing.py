"""Editing: one-pair edits (W+ or padding space) and W+ directions."""

from __future__ import annotations

from typing import Optional, Sequence

import jax.numpy as jnp
import numpy as np

from padinv_jax.inversion.codes import (EDIT_SPACES, Layers, _check_same_keys,
                                        _check_space, layer_mask)


def edit_with_pair(codes_a, codes_a_edited, codes_b, alpha, *,
                   space: str = "padding", layers: Layers = None,
                   padding_keys: Optional[Sequence[str]] = None):
  """One-pair customised editing: E(B) + alpha * (E(A') - E(A)).

  The delta is taken in the chosen space only; the other space keeps B's
  codes. In the paper, spatial attributes (glasses, bangs) edit the padding
  space and style attributes W+. alpha = 0 returns B's codes bit for bit.

  Args:
    codes_a: (ws [1 or N, L, D], paddings) of the reference image A.
    codes_a_edited: codes of the edited reference A', same shapes.
    codes_b: (ws [N, L, D], paddings) of the images to edit.
    alpha: edit strength, a scalar (may be traced).
    space: "w" | "padding" | "both" (static).
    layers: W+ code indices to edit (static; see :func:`layer_mask`);
      default all. Only with space "w" or "both".
    padding_keys: padding maps to edit (static); default all. Only with
      space "padding" or "both".

  Returns:
    (ws [N, L, D], paddings) of the edited images.

  Raises:
    ValueError: an unknown space or padding key, padding space requested
      of codes without paddings, or a selection for a space not edited.
  """
  _check_space(space, EDIT_SPACES)
  if space == "padding" and layers is not None:
    raise ValueError(f"edit_with_pair: layers={layers!r} selects W+ codes, "
                     f"which space='padding' does not edit; use "
                     f"padding_keys, or space='both'")
  if space == "w" and padding_keys is not None:
    raise ValueError(f"edit_with_pair: padding_keys={list(padding_keys)} "
                     f"selects padding maps, which space='w' does not edit; "
                     f"use layers, or space='both'")
  (ws_a, pads_a), (ws_e, pads_e), (ws_b, pads_b) = (codes_a, codes_a_edited,
                                                    codes_b)
  _check_same_keys(pads_a, pads_e, "edit_with_pair")
  _check_same_keys(pads_a, pads_b, "edit_with_pair")
  alpha = jnp.asarray(alpha, jnp.float32)
  ws = ws_b
  if space in ("w", "both"):
    mask = jnp.asarray(layer_mask(ws_b.shape[1], layers))[None, :, None]
    ws = ws_b + alpha * (mask * (ws_e - ws_a))
  pads = dict(pads_b)
  if space in ("padding", "both"):
    if not pads_b:
      raise ValueError("edit_with_pair: space='padding' needs padding maps; "
                       "this encoder has no padding space (use space='w')")
    keys = list(pads_b) if padding_keys is None else list(padding_keys)
    unknown = sorted(set(keys) - set(pads_b))
    if unknown:
      raise ValueError(f"edit_with_pair: unknown padding keys {unknown}; the "
                       f"codes have {sorted(pads_b)}")
    for k in keys:
      pads[k] = pads_b[k] + alpha * (pads_e[k] - pads_a[k])
  return ws, pads


def check_direction(direction, w_dim: int, num_ws: int) -> np.ndarray:
  """Validate an InterFaceGAN / LowRankGAN direction; return it as [n, w_dim].

  Accepted: [w_dim] or [1, w_dim] (one direction for every code) or
  [n, w_dim] with n >= num_ws (one per code; rows past the codes are
  ignored).

  Args:
    direction: array-like.
    w_dim: the generator's w_dim.
    num_ws: the generator's num_ws.

  Returns:
    float32 [n, w_dim].
  """
  d = np.asarray(direction)
  if not np.issubdtype(d.dtype, np.number):
    raise ValueError(f"direction must be numeric, got dtype {d.dtype}")
  shape = tuple(d.shape)
  if d.ndim == 1:
    d = d[None]
  ok = d.ndim == 2 and d.shape[1] == w_dim and (d.shape[0] == 1
                                                or d.shape[0] >= num_ws)
  if not ok:
    raise ValueError(
        f"direction has shape {shape}; expected [{w_dim}], [1, {w_dim}] or "
        f"[n, {w_dim}] with n >= {num_ws} (this generator's num_ws, w_dim = "
        f"{w_dim})")
  if not np.all(np.isfinite(d)):
    raise ValueError("direction contains NaN or infinite values")
  return d.astype(np.float32)


def apply_direction(ws, direction, alpha, *, layers: Layers = None):
  """ws + alpha * direction on the selected codes (InterFaceGAN / LowRankGAN).

  Args:
    ws: [N, L, D] W+ codes.
    direction: [D], [1, D] (broadcast to every code) or [n, D] with one row
      per code; rows beyond L are ignored, codes beyond n get no change.
      Validate a user's file with :func:`check_direction` first.
    alpha: scalar strength (may be traced).
    layers: code indices to edit (static; see :func:`layer_mask`).

  Returns:
    [N, L, D] edited codes; a zero direction or alpha = 0 returns ws exactly.
  """
  d = jnp.asarray(direction, jnp.float32)
  if d.ndim == 1:
    d = d[None]
  if d.ndim != 2 or d.shape[1] != ws.shape[2]:
    raise ValueError(f"direction has shape {np.shape(direction)}; expected "
                     f"[{ws.shape[2]}] or [n, {ws.shape[2]}]")
  num = ws.shape[1]
  if d.shape[0] == 1:
    d = jnp.broadcast_to(d, (num, d.shape[1]))
  elif d.shape[0] >= num:
    d = d[:num]
  else:
    d = jnp.concatenate([d, jnp.zeros((num - d.shape[0], d.shape[1]),
                                      d.dtype)])
  mask = jnp.asarray(layer_mask(num, layers))[:, None]
  return ws + jnp.asarray(alpha, jnp.float32) * (mask * d)[None]
