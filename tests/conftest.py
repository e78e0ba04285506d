"""Test set-up: 8 fake CPU devices and full-precision matmuls, before JAX loads."""

import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Subprocess tests (train.py runs) compile the same steps again: share XLA's
# persistent compilation cache with them through the environment.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR",
    os.path.join(tempfile.gettempdir(), f"padinv_jax_xla_cache_{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "2")

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
