"""benchmarks/inversion.py runs end to end (--quick, tiny config).

No timing assertions: only that the script produces its table fields and
that JAX and the torch reference, fed the same converted weights, agree on
the inverted images (the benchmark's own sanity check).
"""

import json
import os
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "benchmarks")


@pytest.fixture
def inversion_bench():
  sys.path.insert(0, BENCH)
  try:
    import inversion  # noqa: F401 (benchmarks/inversion.py)
    yield inversion
  finally:
    sys.path.remove(BENCH)


def test_inversion_benchmark_quick_tiny(inversion_bench, tmp_path):
  out = tmp_path / "inv.json"
  rows = inversion_bench.main(["--quick", "--configs", "tiny", "--batches",
                               "2", "--json", str(out)])
  data = json.loads(out.read_text())
  assert data["rows"] == json.loads(json.dumps(rows))
  row = rows[0]
  assert row["config"] == "tiny" and row["batch"] == 2
  for key in ("jax_img_s", "torch_img_s", "jax_compile_s", "gflop_per_img",
              "frac_peak", "jax_rss_delta_mb"):
    assert row[key] is not None and row[key] > 0, key
  assert data["matmul_peak"]["jax_gflops"] > 0
  assert row["max_diff"] <= 1e-4 * max(1.0, row["max_ref"])
