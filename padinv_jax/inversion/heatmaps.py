"""Padding heatmaps: the per-position principal components of padding maps."""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np


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
