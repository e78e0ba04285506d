"""A small image classifier whose penultimate features give a domain FID.

For small domains where the Inception features of the standard FID say
little (32 px Fashion-MNIST garments), a classifier trained on the domain
itself judges samples: its features give a domain FID (evaluation/fid.py),
its softmax a class histogram and a confidence. Input [N, R, R, 3] in
[-1, 1] (R a multiple of 8); the channels are averaged to grey first, as the
domain is grey.

Parameter tree: conv{0..4}/{kernel, bias}, features/{kernel, bias},
logits/{kernel, bias}.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections


def classifier_config(**overrides) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.resolution = 32
  c.num_classes = 10
  c.widths = (32, 32, 64, 64, 128)   # conv widths; pool after 2, 4, 5
  c.feature_dim = 128
  for k, v in overrides.items():
    if k not in c:
      raise ValueError(f"unknown classifier config field {k!r}")
    c[k] = v
  return c


class Classifier(nn.Module):
  num_classes: int = 10
  widths: tuple = (32, 32, 64, 64, 128)
  feature_dim: int = 128

  @nn.compact
  def __call__(self, x):
    """Returns (logits [N, classes], features [N, feature_dim])."""
    x = jnp.mean(x.astype(jnp.float32), axis=-1, keepdims=True)
    for i, w in enumerate(self.widths):
      x = nn.relu(nn.Conv(w, (3, 3), padding="SAME", name=f"conv{i}")(x))
      if i in (1, 3, 4):
        x = nn.max_pool(x, (2, 2), (2, 2))
    x = x.reshape(x.shape[0], -1)
    feats = nn.relu(nn.Dense(self.feature_dim, name="features")(x))
    return nn.Dense(self.num_classes, name="logits")(feats), feats


def build(cfg) -> Classifier:
  return Classifier(int(cfg.num_classes), tuple(cfg.widths),
                    int(cfg.feature_dim))


def init_classifier(key, cfg):
  x = jnp.zeros((1, cfg.resolution, cfg.resolution, 3), jnp.float32)
  return jax.jit(build(cfg).init)(key, x)


def apply(variables, images, *, config):
  """(logits, features) for images in [-1, 1]."""
  return build(config).apply(variables, images)
