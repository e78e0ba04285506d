"""Applications over inverted codes: blending, interpolation, editing, heatmaps.

DESIGN.md section 4. The original ships no application code; the recipes here
follow the paper's figures and every choice is an argument. Everything is a
pure function of arrays and is jit-able (``config`` and the ``static``
arguments named in each docstring are read at trace time: close over them
with functools.partial). Codes files (.npz, DESIGN.md section 8) are the one
part that touches disk.

A *code* is the pair ``(ws, paddings)`` that :func:`padinv_jax.invert`
returns: ws [N, L, w_dim] (L = the encoder's num_codes, >= the generator's
num_ws; extra codes are ignored by the generator) and paddings a dict
{"const": p0, "layer0": ..., "layer2": ...} of [N, S, S, C] maps ({} for an
encoder without the padding space). Functions that add a step axis return
ws [K, N, L, w_dim] and maps [K, N, S, S, C]; :func:`flatten_steps` turns that
into one batch of K * N for synthesize.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from padinv_jax import config as config_lib
from padinv_jax import functional

SPACES = ("w", "padding", "both")
EDIT_SPACES = ("w", "padding", "both")

Layers = Union[None, slice, Sequence[int]]


# ------------------------------------------------------------------ helpers

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


# ------------------------------------------------------------- blending

def blend(gen_params, ws_details, pads_contour, *, config,
          noise_mode: str = "const", rng=None):
  """Face blending (the paper's): G(W+ of details B, paddings of contour A).

  The padding space carries the spatial layout (pose, contour, background)
  and W+ the style (identity, colours), so this keeps image A's layout with
  image B's details.

  Args:
    gen_params: generator variables ({"params", "buffers"}).
    ws_details: [N, L, w_dim] codes of the details images (B).
    pads_contour: padding maps of the contour images (A), [N or 1, S, S, C].
    config: ModelConfig or its generator part (static).
    noise_mode: passed to synthesize (static).
    rng: PRNG key for noise_mode="random".

  Returns:
    [N, R, R, 3] float32 images.
  """
  return functional.synthesize(gen_params, ws_details, dict(pads_contour),
                               config=config, noise_mode=noise_mode, rng=rng)


# -------------------------------------------------------- interpolation

def interpolate(codes_a, codes_b, steps: int, *, space: str = "both"):
  """Codes on the straight line from A to B in W+, the padding space, or both.

  With space="w" the paddings stay A's; with "padding" the ws stay A's; so
  the last step is A's and B's codes mixed (a blend) unless space="both".
  The endpoints are exact copies of the inputs.

  Args:
    codes_a: (ws [N, L, D], paddings) of the start.
    codes_b: (ws, paddings) of the end, same shapes.
    steps: K >= 2 (static).
    space: "w" | "padding" | "both" (static).

  Returns:
    (ws [K, N, L, D], paddings {key: [K, N, S, S, C]}).
  """
  _check_space(space)
  (ws_a, pads_a), (ws_b, pads_b) = codes_a, codes_b
  _check_same_keys(pads_a, pads_b, "interpolate")
  if ws_a.shape != ws_b.shape:
    raise ValueError(f"interpolate: ws shapes differ: {tuple(ws_a.shape)} and "
                     f"{tuple(ws_b.shape)}")
  t = lerp_weights(steps)
  if space in ("w", "both"):
    ws = _lerp(ws_a, ws_b, t)
  else:
    ws = _repeat_steps(ws_a, len(t))
  if space in ("padding", "both"):
    pads = {k: _lerp(pads_a[k], pads_b[k], t) for k in pads_a}
  else:
    pads = {k: _repeat_steps(v, len(t)) for k, v in pads_a.items()}
  return ws, pads


def generator_paddings(gen_params, n: int, *, config,
                       size: Optional[int] = None,
                       keys: Optional[Sequence[str]] = None):
  """The generator's own constants as padding maps: exactly plain StyleGAN2.

  p0 ("const") is zeros with the learned 4 x 4 const in its centre and every
  layer map is zeros, so synthesize with these maps equals synthesize with
  no maps (DESIGN.md section 1).

  Args:
    gen_params: generator variables.
    n: batch size N (static).
    config: ModelConfig or its generator part (static).
    size: map side S (static); default 2^(P+1) + 2, the encoder's.
    keys: which maps (static); default all of the config's
      ("const", "layer0", ..., "layer{2(P-1)}").

  Returns:
    {key: [N, S, S, C]} float32.
  """
  g = config_lib.gen_part(config)
  size = int(size or config_lib.padding_size(g.pad_layer_num))
  keys = tuple(keys or config_lib.padding_keys(g.pad_layer_num))
  const = jnp.asarray(gen_params["params"]["synthesis"]["const"], jnp.float32)
  out = {}
  for key in keys:
    if key == "const":
      c = config_lib.channels(g, 4)
      o = (size - 4) // 2
      p0 = jnp.zeros((size, size, c), jnp.float32).at[o:o + 4, o:o + 4].set(
          const)
      out[key] = jnp.broadcast_to(p0[None], (n, size, size, c))
    else:
      res = 4 * 2 ** (int(key[len("layer"):]) // 2)
      c = config_lib.channels(g, res)
      out[key] = jnp.zeros((n, size, size, c), jnp.float32)
  return out


def average_ws(gen_params, n: int, *, config, num_codes: Optional[int] = None):
  """The generator's mapping w_avg broadcast to [N, num_codes, w_dim].

  Args:
    gen_params: generator variables (w_avg in buffers/mapping/w_avg).
    n: batch size (static).
    config: ModelConfig or its generator part (static).
    num_codes: code axis length (static); default the generator's num_ws.

  Returns:
    [N, num_codes, w_dim] float32.
  """
  g = config_lib.gen_part(config)
  num_codes = int(num_codes or config_lib.num_ws(g))
  w_avg = jnp.asarray(gen_params["buffers"]["mapping"]["w_avg"], jnp.float32)
  return jnp.broadcast_to(w_avg[None, None], (n, num_codes, w_avg.shape[-1]))


def from_average(gen_params, pads_target, steps: int, *, config,
                 num_codes: Optional[int] = None):
  """Plain generator at w_avg -> an image's paddings (supp. Fig. S2/S3).

  ws stay the generator's w_avg throughout; the padding maps go from the
  generator's own constants (:func:`generator_paddings`) to
  ``pads_target``, so step 0 is exactly StyleGAN2's image at w_avg and the
  last step shows what the image's paddings alone carry.

  Args:
    gen_params: generator variables.
    pads_target: {key: [N, S, S, C]} padding maps of the images.
    steps: K >= 2 (static).
    config: ModelConfig or its generator part (static).
    num_codes: code axis length of the result (static; default num_ws).

  Returns:
    (ws [K, N, L, D], paddings {key: [K, N, S, S, C]}).
  """
  if not pads_target:
    raise ValueError("from_average needs padding maps; this encoder has no "
                     "padding space")
  any_map = next(iter(pads_target.values()))
  n, size = any_map.shape[0], any_map.shape[1]
  start = generator_paddings(gen_params, n, config=config, size=size,
                             keys=tuple(pads_target))
  ws = average_ws(gen_params, n, config=config, num_codes=num_codes)
  return interpolate((ws, start), (ws, dict(pads_target)), steps,
                     space="padding")


# --------------------------------------------------------------- editing

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


# -------------------------------------------------------------- heatmaps

def padding_heatmaps(paddings: Mapping, num_components: int = 3):
  """Per-map heatmaps: the channel mean and the first principal components.

  For each map [N, S, S, C] the S*S pixels are points in R^C; the principal
  components are those of the pixel cloud of each image (centred over
  pixels), projected back to [S, S]. Each component's sign is fixed so that
  its largest-magnitude loading is positive, making the heatmaps
  deterministic.

  Args:
    paddings: {key: [N, S, S, C]}.
    num_components: k (static), at most C.

  Returns:
    {key: {"mean": [N, S, S], "pca": [N, S, S, k]}} float32.
  """
  out = {}
  for key, p in paddings.items():
    p = jnp.asarray(p, jnp.float32)
    n, s, _, c = p.shape
    k = min(int(num_components), c)
    x = p.reshape(n, s * s, c)
    x = x - jnp.mean(x, axis=1, keepdims=True)
    _, _, vt = jnp.linalg.svd(x, full_matrices=False)  # vt [N, C', C]
    v = vt[:, :k]  # [N, k, C]
    idx = jnp.argmax(jnp.abs(v), axis=-1)
    sign = jnp.sign(jnp.take_along_axis(v, idx[..., None], axis=-1))
    v = v * jnp.where(sign == 0, 1.0, sign)
    proj = jnp.einsum("npc,nkc->npk", x, v,
                      precision=jax.lax.Precision.HIGHEST)
    out[key] = {"mean": jnp.mean(p, axis=-1),
                "pca": proj.reshape(n, s, s, k)}
  return out


def colorize(heatmap) -> np.ndarray:
  """[H, W] values -> [H, W, 3] uint8, a blue-white-red diverging map.

  Scaled by the map's largest magnitude, so 0 is white and the sign shows
  as the hue (host-side numpy, for writing PNGs).
  """
  h = np.asarray(heatmap, np.float32)
  peak = float(np.max(np.abs(h))) if h.size else 0.0
  t = h / peak if peak > 0 else np.zeros_like(h)
  pos, neg = np.clip(t, 0, 1), np.clip(-t, 0, 1)
  rgb = np.stack([1 - neg, 1 - pos - neg, 1 - pos], axis=-1)
  return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


# ----------------------------------------------------------- codes files

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
  try:
    with np.load(path, allow_pickle=False) as z:
      arrays = {k: z[k] for k in z.files}
  except (OSError, ValueError) as e:
    raise ValueError(f"{path} is not a readable .npz codes file ({e}); write "
                     f"codes with `padinv invert` or apps.save_codes") from e
  missing = [k for k in ("ws", "num_ws", "pad_layer_num") if k not in arrays]
  if missing:
    raise ValueError(f"{path} is not a padinv codes file: keys {missing} are "
                     f"missing (found {sorted(arrays)})")
  ws = arrays.pop("ws")
  meta = {"num_ws": int(arrays.pop("num_ws")),
          "pad_layer_num": int(arrays.pop("pad_layer_num"))}
  pads = {k[len("pad_"):]: v for k, v in arrays.items()
          if k.startswith("pad_")}
  if ws.ndim != 3:
    raise ValueError(f"{path}: ws must be [N, L, w_dim], found {ws.shape}")
  for k, v in pads.items():
    if v.ndim != 4 or v.shape[0] != ws.shape[0]:
      raise ValueError(f"{path}: pad_{k} must be [N={ws.shape[0]}, S, S, C], "
                       f"found {v.shape}")
  return ws, pads, meta
