"""Verified checkpoints: never write a non-finite state, never restore a damaged one.

Both trainers save through ``Checkpoints``. A save refuses a state with a
non-finite value in any leaf (params, optimiser state, BatchNorm statistics,
EMA), raising NonFiniteStateError that names the step and the leaves, and
writes a SHA-256 of every leaf's bytes to ``checksums/STEP.json`` before
orbax writes the step (a crash in between leaves a checksum without a step,
which is pruned). A step without a checksum file (saved by an older
padinv_jax) is taken if finite, with a warning that it is unverified. A restore walks the steps newest first and takes the first
one that orbax reads, that matches its checksums and that is finite; each
one skipped is named in the log with the reason and moved to DIR-corrupt/. If steps exist and none is
intact, it raises instead of silently starting over.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Optional

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp


class NonFiniteStateError(FloatingPointError):
  """The training state holds NaN or Inf: the run stops, nothing is saved."""


class CorruptCheckpointsError(RuntimeError):
  """Checkpoints exist but none of them is intact."""


def _leaves(tree):
  return [(jax.tree_util.keystr(p), x)
          for p, x in jax.tree_util.tree_leaves_with_path(tree)]


def nonfinite_leaves(tree) -> list[str]:
  """Paths of floating-point leaves holding NaN or Inf (host check)."""
  bad = []
  for name, x in _leaves(tree):
    a = np.asarray(jax.device_get(x))
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
      bad.append(name)
  return bad


def checksums(tree) -> dict[str, str]:
  out = {}
  for name, x in _leaves(tree):
    a = np.ascontiguousarray(np.asarray(jax.device_get(x)))
    h = hashlib.sha256(str((a.dtype.str, a.shape)).encode())
    h.update(a.tobytes())
    out[name] = h.hexdigest()
  return out


class Checkpoints:
  """An orbax CheckpointManager with checksums and finiteness checks."""

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    self._keep = keep
    self._open()
    self._sums_dir = os.path.join(self.directory, "checksums")

  def _open(self):
    self.mngr = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(
            max_to_keep=self._keep, create=True))

  def _set_aside(self, steps):
    """Move corrupt steps to DIR-corrupt/ (kept for inspection, out of the
    way of the steps the resumed run will write under the same numbers)."""
    if not steps or jax.process_index() != 0:
      return
    self.mngr.close()
    aside = self.directory + "-corrupt"
    os.makedirs(aside, exist_ok=True)
    for step in steps:
      src = os.path.join(self.directory, str(step))
      dst = os.path.join(aside, f"{step}-{int(time.time())}")
      if os.path.exists(src):
        os.replace(src, dst)
        logging.warning("moved corrupt checkpoint %d to %s", step, dst)
      if os.path.exists(self._sums_path(step)):
        os.remove(self._sums_path(step))
    self._open()

  def _sums_path(self, step: int) -> str:
    return os.path.join(self._sums_dir, f"{step}.json")

  def latest_step(self) -> Optional[int]:
    return self.mngr.latest_step()

  def save(self, step: int, state: Any) -> None:
    """Writes step (waiting for it), or raises NonFiniteStateError."""
    bad = nonfinite_leaves(state)
    if bad:
      raise NonFiniteStateError(
          f"step {step}: the training state holds NaN/Inf in {len(bad)} "
          f"leaves ({', '.join(bad[:6])}{', ...' if len(bad) > 6 else ''}); "
          f"not saving it. The last good checkpoint in {self.directory} is "
          "kept: lower the learning rate or check the data, then resume")
    if jax.process_index() == 0:
      os.makedirs(self._sums_dir, exist_ok=True)
      tmp = self._sums_path(step) + ".tmp"
      with open(tmp, "w") as f:
        json.dump(checksums(state), f)
      os.replace(tmp, self._sums_path(step))
    self.mngr.save(step, args=ocp.args.StandardSave(state), force=True)
    self.mngr.wait_until_finished()
    self._prune()

  def _prune(self):
    if jax.process_index() != 0 or not os.path.isdir(self._sums_dir):
      return
    live = {str(s) for s in self.mngr.all_steps()}
    for name in os.listdir(self._sums_dir):
      if name.endswith(".json") and name[:-5] not in live:
        os.remove(os.path.join(self._sums_dir, name))

  def _verify(self, step: int, state) -> Optional[str]:
    """None if intact, else why not."""
    path = self._sums_path(step)
    if not os.path.isfile(path):
      bad = nonfinite_leaves(state)
      if bad:
        return f"non-finite values in {', '.join(bad[:4])}"
      logging.warning("checkpoint %d has no checksum file (written before "
                      "padinv_jax kept them): finite, but unverified", step)
      return None
    try:
      with open(path) as f:
        want = json.load(f)
    except (OSError, ValueError) as e:
      return f"its checksum file is unreadable ({e})"
    got = checksums(state)
    changed = sorted(k for k in set(want) | set(got)
                     if want.get(k) != got.get(k))
    if changed:
      return (f"{len(changed)} leaves differ from their checksums "
              f"({', '.join(changed[:4])}{', ...' if len(changed) > 4 else ''})")
    bad = nonfinite_leaves(state)
    if bad:
      return f"non-finite values in {', '.join(bad[:4])}"
    return None

  def restore_latest(self, target) -> Optional[Any]:
    """The newest intact state (shaped like ``target``), or None if none saved.

    Args:
      target: abstract state (ShapeDtypeStructs with shardings).

    Raises:
      CorruptCheckpointsError: steps exist and none is intact.
    """
    steps = sorted(self.mngr.all_steps(), reverse=True)
    reasons, corrupt = [], []
    for step in steps:
      try:
        state = self.mngr.restore(step, args=ocp.args.StandardRestore(target))
      except Exception as e:  # pylint: disable=broad-except
        # orbax / tensorstore raise many types for damaged files.
        why = f"orbax could not read it ({type(e).__name__}: {str(e)[:160]})"
      else:
        why = self._verify(step, state)
        if why is None:
          if reasons:
            logging.warning("resuming from step %d, the newest intact "
                            "checkpoint", step)
            self._set_aside(corrupt)
          return state
      logging.warning("checkpoint %d in %s is corrupt: %s; trying an older "
                      "one", step, self.directory, why)
      reasons.append(f"step {step}: {why}")
      corrupt.append(step)
    if steps:
      raise CorruptCheckpointsError(
          f"no intact checkpoint in {self.directory} ({'; '.join(reasons)}); "
          "move the folder away to start over")
    return None

  def wait(self):
    self.mngr.wait_until_finished()
