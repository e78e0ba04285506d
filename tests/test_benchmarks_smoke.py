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


def test_convs_benchmark_quick(tmp_path, monkeypatch):
  """benchmarks/convs.py on two small shapes: its table fields, and that the
  forward conv and both kernel gradients agree with torch on them."""
  sys.path.insert(0, BENCH)
  try:
    import convs  # noqa: F401 (benchmarks/convs.py)
  finally:
    sys.path.remove(BENCH)
  monkeypatch.setattr(convs, "SHAPES", [(16, 32, 48, 1, "a"),
                                        (16, 32, 48, 2, "b")])
  rows = convs.main(["--quick", "--batches", "2", "--json",
                     str(tmp_path / "convs.json")])
  assert [r["shape"] for r in rows] == ["16^2x32->48 s1", "16^2x32->48 s2"]
  for row in rows:
    for key in ("jax_gflops", "torch_gflops", "dw_ours_gflops",
                "dw_xla_gflops", "dw_torch_gflops"):
      assert row[key] > 0, key
    assert row["max_diff"] < 1e-4 and row["dw_rel_diff"] < 1e-5, row


def test_official_benchmark_names_what_it_needs(tmp_path, capsys):
  """benchmarks/official.py without the official checkout: one clear line.

  (The comparison itself needs github.com/EzioBy/padinv, which CI cannot
  fetch; its numbers are in benchmarks/RESULTS.md.)"""
  sys.path.insert(0, BENCH)
  try:
    import official  # noqa: F401 (benchmarks/official.py)
    import official_child
    with pytest.raises(SystemExit):
      official.main([])
    assert "--official PATH" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="missing"):
      official_child.import_official(str(tmp_path))
  finally:
    sys.path.remove(BENCH)


def test_cpu_paths_benchmark_tiny(tmp_path):
  """benchmarks/cpu_paths.py on the tiny networks: each variant runs and,
  XLA's own op put back or not, computes the same thing. (The training-step
  case compiles five steps, ~30 s; its two gradient paths have their own
  tests in test_conv_grad.py and test_fir_grad.py.)"""
  sys.path.insert(0, BENCH)
  try:
    import cpu_paths  # noqa: F401 (benchmarks/cpu_paths.py)
  finally:
    sys.path.remove(BENCH)
  rows = cpu_paths.main(["--tiny", "--reps", "1", "--cases",
                         "encoder,synthesis", "--json",
                         str(tmp_path / "cpu_paths.json")])
  variants = {(r["case"], r["variant"]) for r in rows}
  assert len(variants) == len(rows) == 2 + 2
  for r in rows:
    assert r["median_s"] > 0 and r["max_scaled_diff"] < 1e-4, r
  # The demod variant really is another computation (float32 sums in
  # another order), not the first trace handed back by jit's cache. (The
  # tiny heads have no 2x2 -> 1x1 conv: their encoder rows are one graph.)
  synthesis = [r for r in rows if "synthesis" in r["case"]]
  assert synthesis[1]["max_scaled_diff"] > 0, synthesis
