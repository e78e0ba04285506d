"""XLA:CPU flags the training commands set before JAX starts its backend.

XLA reads XLA_FLAGS once, when the first backend is created, and this flag
only from there (passing it as a jit compiler option is accepted and
ignored), so it has to be in the environment before the first device is
touched. A notebook sets it before importing jax::

  os.environ["XLA_FLAGS"] = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
"""

from __future__ import annotations

import os
import sys
from typing import MutableMapping, Optional
import warnings

# XLA:CPU's default scheduler favours concurrency: it starts independent
# work early and so keeps more activations alive at once. The memory-
# minimising one measured (benchmarks/official.py, IR-SE-50 + padded
# StyleGAN2, batch 2, peak RSS): 9.46 -> 6.68 GB with a 256 px G, 12.35 ->
# 9.73 GB at 1024 px (the official PyTorch code: 7.62 / 11.80 GB), at the
# same step time (10.3 / 10.2 s and 15.2 / 14.3 s).
MEMORY_SCHEDULER = "xla_cpu_enable_concurrency_optimized_scheduler"


def add_defaults(environ: Optional[MutableMapping[str, str]] = None) -> str:
  """Adds ``--{MEMORY_SCHEDULER}=false`` to XLA_FLAGS unless it is set.

  A user's own setting of the flag wins. Returns the new XLA_FLAGS. Other
  backends ignore xla_cpu_* flags. Warns when it adds the flag to this
  process's environment after JAX's backend has started (then only child
  processes get it).
  """
  own = environ is None
  environ = os.environ if own else environ
  flags = environ.get("XLA_FLAGS", "")
  if MEMORY_SCHEDULER not in flags:
    flags = f"{flags} --{MEMORY_SCHEDULER}=false".strip()
    environ["XLA_FLAGS"] = flags
    if own and backend_started():
      warnings.warn(f"--{MEMORY_SCHEDULER}=false was added to XLA_FLAGS "
                    "after JAX's backend started; it takes effect in child "
                    "processes only (set XLA_FLAGS before the first jax "
                    "call)", stacklevel=2)
  return flags


def backend_started() -> bool:
  """Whether JAX has started a backend (XLA_FLAGS no longer take effect)."""
  if "jax" not in sys.modules:
    return False
  try:
    from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):
    return False
