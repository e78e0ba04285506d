"""Torch-free pieces the benchmarks share: the timed loss, host memory,
timing, aligned text tables.

device_check.py (which must run without torch), official_child.py,
train_step.py and make_device_check_ref.py import this.
"""

from __future__ import annotations

import statistics
import time

MSE, WNORM = 1.0, 0.003


def step_config(optim: str = "adam", lr: float = 1e-4,
                grad_clamp: float = 1e5):
  """The benchmarks' training objective for train_lib.train_step: 1.0 * MSE
  + 0.003 * W-norm (no LPIPS / ID / adversarial terms), gradients NaN -> 0
  and clamped to +-grad_clamp, ``optim`` (adam | sgd) at ``lr``."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  c = ml_collections.ConfigDict()
  c.loss = ml_collections.ConfigDict(dict(
      mse=MSE, lpips=0.0, id=0.0, wnorm=WNORM, adv=0.0, r1_gamma=10.0,
      downsample="avgpool"))
  c.optim = ml_collections.ConfigDict(dict(
      name=optim, lr=lr, b1=0.9, b2=0.999, eps=1e-8, grad_clamp=grad_clamp,
      skip_nonfinite=False))
  return c


# ----------------------------------------------------------------------------
# Memory of this process (Linux /proc; None / False elsewhere).


def _status_mb(field: str):
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return None


def rss_mb():
  """Resident set size now, MB."""
  return _status_mb("VmRSS")


def peak_rss_mb():
  """Peak resident set size (VmHWM) since start or reset_peak(), MB."""
  return _status_mb("VmHWM")


def reset_peak() -> bool:
  """Resets VmHWM to the current RSS (Linux >= 4.0); False where refused."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def median_time(fn, warmup: int, reps: int) -> tuple[float, list]:
  """(median s, all times) of ``reps`` blocking calls after ``warmup``."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return float(statistics.median(times)), times


def text_table(rows, cols, left: bool = False, rule: bool = False
               ) -> list[str]:
  """Aligned lines, header first, of ``rows`` (dicts) under ``cols`` of
  (key, header, format); a missing or None value prints "-". ``left``
  left-aligns the cells (default right); ``rule`` adds a -+- line under the
  header."""
  head = [h for _, h, _ in cols]
  body = [["-" if r.get(k) is None else format(r[k], f) for k, _, f in cols]
          for r in rows]
  widths = [max([len(h)] + [len(b[i]) for b in body])
            for i, h in enumerate(head)]
  pad = (lambda v, w: v.ljust(w)) if left else (lambda v, w: v.rjust(w))
  lines = [" | ".join(pad(v, w) for v, w in zip(line, widths))
           for line in [head] + body]
  if rule:
    lines.insert(1, "-+-".join("-" * w for w in widths))
  return lines
