"""Frechet distance between feature statistics, as stylegan2-ada-pytorch computes it.

Statistics are float64: mu = E[f], Sigma = E[f f^T] - mu mu^T (divided by N,
NVIDIA's FeatureStats); FID = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 sqrtm(S_a
S_b)) with scipy's sqrtm (real part). Comparable only between runs that use
the same feature network.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import scipy.linalg


def feature_stats(features: Iterable[np.ndarray]):
  """(mu [D], sigma [D, D], n) of feature batches, in float64."""
  total, outer, n = None, None, 0
  for f in features:
    f = np.asarray(f, np.float64).reshape(len(f), -1)
    if total is None:
      total = np.zeros(f.shape[1])
      outer = np.zeros((f.shape[1], f.shape[1]))
    total += f.sum(0)
    outer += f.T @ f
    n += len(f)
  if not n:
    raise ValueError("feature_stats: no features")
  mu = total / n
  return mu, outer / n - np.outer(mu, mu), n


def frechet_distance(stats_a, stats_b) -> float:
  mu_a, s_a = stats_a[0], stats_a[1]
  mu_b, s_b = stats_b[0], stats_b[1]
  m = np.square(mu_a - mu_b).sum()
  root, _ = scipy.linalg.sqrtm(np.dot(s_a, s_b), disp=False)
  return float(np.real(m + np.trace(s_a + s_b - 2 * root)))


def batched(fn: Callable, images: np.ndarray, batch: int = 500):
  """fn over images in batches (a generator of fn's outputs)."""
  for i in range(0, len(images), batch):
    yield fn(images[i:i + batch])
