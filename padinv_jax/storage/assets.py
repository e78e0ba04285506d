"""Embedded model directories by short name (padinv_jax/assets/NAME).

``padinv_jax.load("fashion32")`` and ``padinv ... --model fashion32`` take a
model shipped inside the package when no directory of that name exists
where the user is. The names are the asset folders holding a config.json.
"""

from __future__ import annotations

import importlib.resources
import os
from typing import Optional


def _root():
  return importlib.resources.files("padinv_jax") / "assets"


def names() -> list[str]:
  """Short names of the embedded model / part directories."""
  root = _root()
  if not root.is_dir():
    return []
  return sorted(p.name for p in root.iterdir()
                if p.is_dir() and (p / "config.json").is_file())


def resolve(path: str) -> Optional[str]:
  """The embedded directory for a short name, if ``path`` is not a path."""
  if os.path.exists(path) or os.sep in path or path not in names():
    return None
  return str(_root() / path)
