"""Give freed host memory back to the operating system (glibc malloc_trim).

XLA's compiler and the checkpoint reader free gigabytes of host memory when
they finish, but glibc keeps freed heap pages for reuse, so the process's
resident size (what a batch scheduler or the OOM killer sees) stays at its
high-water mark: on the CPU backend the training step's working memory is
then allocated on top of it. ``release()`` returns those pages; it is a
no-op where glibc is absent (macOS, musl) and costs milliseconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.lru_cache(maxsize=1)
def _malloc_trim():
  if not sys.platform.startswith("linux"):
    return None
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    fn = libc.malloc_trim
  except (OSError, AttributeError):
    return None
  fn.argtypes = [ctypes.c_size_t]
  fn.restype = ctypes.c_int
  return fn


def release() -> bool:
  """Returns freed heap memory to the OS; True when glibc did so."""
  fn = _malloc_trim()
  return bool(fn(0)) if fn is not None else False
