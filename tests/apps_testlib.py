"""Tiny random models for the application and CLI tests, built in seconds.

init_generator + init_encoder compile the whole init graph (minutes for the
IR-SE-50 encoder on a busy 2-core machine), so the tests build the variable
tree from jax.eval_shape of those same inits (the exact tree save_model and
load check against) and fill it with numpy random values of sensible scale.
The application tests only need some well-behaved model, not a particular
initialisation.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from padinv_jax.models import config as config_lib
from padinv_jax.storage import model_dir


def tiny_config(resolution: int = 32, input_size: int = 64):
  """tiny_model_config with a 64 px encoder input (faster compiles)."""
  cfg = config_lib.tiny_model_config(resolution)
  cfg.encoder.input_size = input_size
  return cfg


def _fill(path: str, shape, rng: np.random.RandomState) -> np.ndarray:
  leaf = path.split("/")[-1]
  if leaf in ("mean",):
    return 0.05 * rng.randn(*shape)
  if leaf == "var":
    return 1.0 + 0.1 * rng.rand(*shape)
  if leaf == "scale":
    return 1.0 + 0.1 * rng.randn(*shape)
  if leaf == "w_avg":
    return 0.5 * rng.randn(*shape)
  if path.startswith("generator/"):
    if "mapping/fc" in path and leaf == "weight":
      return rng.randn(*shape) / 0.01  # EqualDense with lr_mul 0.01
    if "affine" in path and leaf == "bias":
      return 1.0 + 0.1 * rng.randn(*shape)
    if leaf == "bias":
      return 0.1 * rng.randn(*shape)
    if leaf == "noise_strength":
      return np.asarray(0.1)
    if "torgb" in path and leaf == "weight":
      return 0.1 * rng.randn(*shape)  # keeps images mostly inside [-1, 1]
    return rng.randn(*shape)  # const, conv/dense weights, noise_const
  # Encoder.
  if leaf == "kernel":
    return rng.randn(*shape) / np.sqrt(np.prod(shape[:-1]))
  if leaf == "weight" and len(shape) == 1:
    return np.full(shape, 0.25)  # PReLU
  if leaf == "weight":
    return rng.randn(*shape)  # EqualDense heads (runtime 1/sqrt(fan_in))
  return 0.02 * rng.randn(*shape)  # biases


def random_params(config, seed: int = 0) -> dict:
  """Random variables with exactly the tree model_dir expects for config."""
  # One stream per part: the generator is the same with or without encoder.
  rngs = {"generator": np.random.RandomState(seed),
          "encoder": np.random.RandomState(seed + 1)}
  shapes = model_dir.expected_shapes(config)
  flat, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  leaves = []
  for path, s in flat:
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    rng = rngs[name.split("/")[0]]
    leaves.append(np.asarray(_fill(name, s.shape, rng), s.dtype))
  params = jax.tree_util.tree_unflatten(treedef, leaves)
  if "encoder" in params:
    # PadInv takes the encoder's w_avg from the generator's.
    params["encoder"]["buffers"]["w_avg"] = np.array(
        params["generator"]["buffers"]["mapping"]["w_avg"])
  return params


def save_tiny_model(path: str, *, seed: int = 0, with_encoder: bool = True,
                    resolution: int = 32):
  """Write a tiny random model directory; returns (config, params)."""
  cfg = tiny_config(resolution)
  if not with_encoder:
    cfg = config_lib.model_config(dict(cfg.generator), with_encoder=False)
  params = random_params(cfg, seed)
  model_dir.save_model(os.fspath(path), cfg, params)
  return cfg, params


def random_image(size: int, seed: int) -> np.ndarray:
  """A smooth, non-constant uint8 RGB image."""
  rng = np.random.RandomState(seed)
  yy, xx = np.mgrid[0:size, 0:size] / size
  chans = [np.sin(2 * np.pi * (rng.rand() * 2 * xx + rng.rand() * 2 * yy)
                  + rng.rand() * 6) for _ in range(3)]
  img = 0.5 + 0.4 * np.stack(chans, -1) + 0.1 * rng.rand(size, size, 3)
  return np.clip(img * 255, 0, 255).astype(np.uint8)


def save_random_part(path: str, part: str, config: dict, seed: int = 0):
  """A random LPIPS / ArcFace part directory (as padinv-convert writes)."""
  from padinv_jax.storage import part_dir  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(seed)
  shapes = part_dir.expected_shapes(part, config)
  flat, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  leaves = []
  for p, s in flat:
    name = "/".join(str(getattr(k, "key", k)) for k in p)
    v = np.abs(_fill("encoder/" + name, s.shape, rng)) if name.startswith(
        "params/lin") else _fill("encoder/" + name, s.shape, rng)
    leaves.append(np.asarray(v, s.dtype))
  variables = jax.tree_util.tree_unflatten(treedef, leaves)
  part_dir.save_part(os.fspath(path), part, config, variables)
  return variables
