"""Seeded fuzzing of the readers: mutated checkpoints of each format and codes files.

Small valid files (a torch zip and a legacy torch file in rosinality's
layout, an NVIDIA persistent pickle, a codes .npz) get thousands of random
mutations (byte flips, overwrites with special bytes, truncations,
insertions, duplicated spans). Each mutant must load or fail with the
readers' own error types (ConvertError / ValueError); nothing may raise
anything else, hang, or pass a memory cap. Runs in a subprocess watched
for RSS, bounded in time.
"""

import sys

import hostile_lib

FUZZ = r'''
import io, os, sys, time, resource
import numpy as np, torch
sys.path.insert(0, "tests")
from padinv_jax.convert import torch_files
from padinv_jax.convert.errors import ConvertError
from padinv_jax.inversion import codes as codes_lib
from torch_ref import nvidia_persistence, rosinality_ref

rng = np.random.default_rng(int(sys.argv[1]))
budget = float(sys.argv[2])
sd = rosinality_ref.random_state_dict(16, 8, 2, {4: 8, 8: 8, 16: 4})
bases = {}
for zipped in (True, False):
  buf = io.BytesIO()
  torch.save({"g_ema": sd, "latent_avg": torch.zeros(8)}, buf,
             _use_new_zipfile_serialization=zipped)
  bases["zip" if zipped else "legacy"] = buf.getvalue()
root = nvidia_persistence.tree_from_state_dict(
    {"mapping.fc0.weight": torch.randn(8, 8), "mapping.w_avg": torch.zeros(8)},
    class_names={"": "Generator"}, init_kwargs={"z_dim": 8, "w_dim": 8})
bases["nvidia"] = nvidia_persistence.dumps({"G_ema": root})
import tempfile
path = os.path.join(tempfile.mkdtemp(prefix="padinv-fuzz-"), "codes.npz")
codes_lib.save_codes(path, np.zeros((1, 4, 8), np.float32),
                     {"const": np.ones((1, 6, 6, 8), np.float32)}, num_ws=4)
bases["codes"] = open(path, "rb").read()

def mutate(b):
  b = bytearray(b)
  for _ in range(rng.integers(1, 6)):
    op = rng.integers(0, 5)
    i = int(rng.integers(0, max(len(b), 1)))
    if op == 0 and b:
      b[i] ^= 1 << int(rng.integers(0, 8))
    elif op == 1 and b:
      b[i] = int(rng.choice([0, 0xFF, 0x7F, 0x80, ord("("), ord("."), 0x8A]))
    elif op == 2:
      b = b[:i]
    elif op == 3:
      b[i:i] = bytes(rng.integers(0, 256, int(rng.integers(1, 9)), np.uint8))
    elif b:
      j = int(rng.integers(i, min(len(b), i + 64) + 1))
      b[i:i] = b[i:j] * int(rng.integers(1, 4))
  return bytes(b)

counts = {k: 0 for k in bases}
odd = []
t0 = time.time()
while time.time() - t0 < budget:
  for kind, base in bases.items():
    m = mutate(base)
    try:
      if kind == "codes":
        with open(path, "wb") as f:
          f.write(m)
        codes_lib.load_codes(path)
      else:
        torch_files.load_bytes(m, kind)
    except (ConvertError, ValueError, FileNotFoundError):
      pass
    except Exception as e:
      odd.append(f"{kind}: {type(e).__name__}: {str(e)[:120]}")
    counts[kind] += 1
print("COUNTS", counts)
print("ODD", len(odd))
for o in odd[:20]:
  print("  ", o)
'''


def test_fuzz_mutated_files_fail_only_with_reader_errors(tmp_path):
  rc, out, err, peak, killed = hostile_lib.run_capped(
      [sys.executable, "-c", FUZZ, "0", "30"], cap_mb=800, timeout=240)
  assert not killed, f"RSS passed 800 MB ({peak:.0f} MB)"
  assert rc == 0, err[-3000:]
  counts = eval(out.split("COUNTS", 1)[1].splitlines()[0])  # pylint: disable=eval-used
  assert sum(counts.values()) >= 2000 and min(counts.values()) >= 300, counts
  assert "ODD 0" in out, out
