"""Test set-up: 8 fake CPU devices and full-precision matmuls, before JAX loads."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def golden_dir():
  """../shared/golden relative to the project root (skips if absent)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  d = os.path.join(os.path.dirname(root), "shared", "golden")
  if not os.path.isdir(d):
    pytest.skip(f"golden reference files not found at {d}")
  return d
