"""benchmarks/device_check.py at its smallest size, and that it can fail.

The stored reference (benchmarks/device_check_ref.npz) was made by the
PyTorch references (benchmarks/make_device_check_ref.py); here the check
runs on this machine's backend as a user would run it on an accelerator.
"""

import importlib.util
import json
import os

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "device_check.py")
REF = os.path.join(REPO, "benchmarks", "device_check_ref.npz")


def _module():
  spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_device_check_tiny_passes_and_reports(tmp_path):
  out = tmp_path / "dc.json"
  rc = _module().main(["--size", "tiny", "--reps", "1", "--json", str(out)])
  data = json.loads(out.read_text())
  assert rc == 0, [c for c in data["parity"] if not c["ok"]]
  names = [c["check"] for c in data["parity"]]
  for want in ("mapping", "encoder W+", "synthesis (padded)",
               "train step: loss"):
    assert want in names
  assert any(n.startswith("train step: (old - new) / lr") for n in names)
  assert any(n.startswith("encoder padding") for n in names)
  assert {(r["what"], r["dtype"]) for r in data["speed"]} == {
      (w, d) for w in ("inversion G(E(x))", "training step")
      for d in ("float32", "bfloat16")}
  for r in data["speed"]:
    assert r["median_s"] > 0 and r["peak_mb"] > 0
  assert all(r["finite"] for r in data["speed"] if "finite" in r)
  assert data["platform"] == "cpu"


@pytest.mark.parametrize("key", ["ref/image", "ref/step/params"])
def test_device_check_fails_on_a_wrong_reference(tmp_path, key):
  ref = dict(np.load(REF))
  hit = [k for k in ref if k.startswith(key)]
  assert hit
  k = max(hit, key=lambda k: ref[k].size)
  sign = np.sign(np.random.default_rng(0).standard_normal(ref[k].shape))
  if key == "ref/image":
    # 1e-3 of the image scale: 10x the bound.
    delta = 1e-3 * max(1.0, float(np.abs(ref[k]).max()))
  else:
    # The new params, moved so that update / lr changes by 0.1 of its
    # scale: 5x its bound (which allows for gradients that jump at
    # activation kinks).
    old = ref["v/encoder/params/" + k[len("ref/step/params/"):]]
    lr = 0.01
    delta = 0.1 * lr * max(1.0, float(np.abs((old - ref[k]) / lr).max()))
  ref[k] = (ref[k] + delta * sign).astype(np.float32)
  bad = tmp_path / "bad.npz"
  np.savez(bad, **ref)
  out = tmp_path / "dc.json"
  rc = _module().main(["--skip-speed", "--reference", str(bad),
                       "--json", str(out)])
  assert rc == 1
  failed = [c["check"] for c in json.loads(out.read_text())["parity"]
            if not c["ok"]]
  assert len(failed) == 1, failed
  assert failed[0].startswith("synthesis" if key == "ref/image"
                              else "train step: (old - new) / lr")


def test_device_check_refuses_a_non_reference(tmp_path):
  bad = tmp_path / "x.npz"
  np.savez(bad, a=np.zeros(3))
  with pytest.raises(SystemExit, match="not a device-check reference"):
    _module().main(["--skip-speed", "--reference", str(bad),
                    "--json", str(tmp_path / "o.json")])
