"""Data that ships inside the package (padinv_jax/assets): held-out test images.

Read with importlib.resources, so it works from a wheel as from a checkout;
nothing is downloaded.
"""

from __future__ import annotations

import importlib.resources

import numpy as np

from padinv_jax.data import fashion_mnist


def asset_path(name: str) -> str:
  """The file path of an embedded asset (FileNotFoundError if absent)."""
  p = importlib.resources.files("padinv_jax") / "assets" / name
  if not p.is_file() and not p.is_dir():
    raise FileNotFoundError(f"embedded asset {name!r} is missing from the "
                            f"package ({p}); reinstall padinv_jax")
  return str(p)


def fashion_test_images(size: int = 32):
  """(images [300, size, size, 3] uint8, labels [300]): held-out test images."""
  with np.load(asset_path("fashion_mnist_test300.npz"),
               allow_pickle=False) as z:
    images, labels = z["images"], z["labels"]
  return fashion_mnist.to_canvas(images, size), labels


def fashion_test_indices() -> np.ndarray:
  """The rows in Fashion-MNIST t10k of the 300 held-out test images."""
  with np.load(asset_path("fashion_mnist_test300.npz"),
               allow_pickle=False) as z:
    return np.asarray(z["test_indices"], np.int64)


def fashion_other_test_indices(num_test: int) -> np.ndarray:
  """Rows 0..num_test-1 of t10k that are NOT among the shipped 300, sorted:
  the test images evaluation and studies may use beside the demo's."""
  return np.setdiff1d(np.arange(num_test), fashion_test_indices())
