"""padinv_jax against the OFFICIAL PadInv code: training-step memory and speed.

The official code (github.com/EzioBy/padinv) is not part of this repository:
clone it anywhere and pass its root with --official (or PADINV_OFFICIAL).
Its models run on the CPU with their pure-PyTorch op paths (impl='ref');
only its two model files and the ops they import are loaded (no OpenCV,
DALI or distributed set-up; `pip install easydict` is the one extra).

For each generator resolution the parent builds the official encoder
(IR-SE-50, 256 px input, FPN 512, codes [3, 4, 11], padding space with 4
padded layers, the paper's defaults) and the official padded StyleGAN2
generator with random weights (w_avg = mean of mapping(z)), saves them as an
official training checkpoint and converts that with `padinv-convert
--format padinv`, as a user would. Every case then runs in a FRESH process
(peak RSS is per process: VmHWM): the official training step as its runner
does it (E in train mode, G.synthesis(wp, padding_maps, impl='ref') frozen
in eval mode, G output average-pooled to 256 px, MSE 1.0 + W-norm 0.003,
NaN grads -> 0, Adam 1e-4) or padinv_jax's train_lib.train_step (the step
padinv-train jits, state donated) with one remat choice / accumulation /
compute dtype. Cases alternate between the two codes so drift hits both.

Optionally (--phases) each side also times the step's pieces one by one:
encoder forward, generator forward + loss, generator backward (to W+ and
the padding maps), encoder backward, gradient clean-up + Adam.

  python benchmarks/official.py --official ~/src/padinv \
      --gen-res 256,1024 --batch 2 --remat none,encoder,synthesis,both \
      --accum 1,2 --phases --json benchmarks/results/official.json
  python benchmarks/official.py --official ~/src/padinv --what invert \
      --gen-res 256,1024 --batch 1,4 --json benchmarks/results/official_invert.json

--what invert times G(E(x)) instead (eval mode, no autograd; padinv_jax:
invert + synthesize under one jit), at the generator's resolution.

XLA runs with its default flags (pass --ynn for the YNNPACK conv flag).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from official_child import (  # noqa: E402
    HERE, PHASES, YNN_FLAG, child_jax, child_jax_invert, child_official,
    child_official_invert, official_kwargs, official_models)
from measure import text_table  # noqa: E402


def prepare(root: str, res: int, out: str) -> dict:
  """Random official E + G -> out/official.pth and the converted out/model."""
  os.makedirs(out, exist_ok=True)
  ckpt = os.path.join(out, "official.pth")
  model = os.path.join(out, "model")
  if os.path.isdir(model) and os.path.isfile(ckpt):
    return {"checkpoint": ckpt, "model": model}
  torch, enc, gen = official_models(root, res)
  torch.manual_seed(res)
  with torch.no_grad():
    for m in enc.modules():  # BatchNorm affine params off their 1 / 0 init
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.2, 0.2)
    w = gen.mapping(torch.randn(2000, 512), impl="ref")["w"]
    gen.w_avg.copy_(w.mean(0))
  torch.save({"models": {"encoder": enc.state_dict(),
                         "generator": gen.state_dict()},
              "model_kwargs_init": official_kwargs(res)}, ckpt)
  del enc, gen
  t0 = time.perf_counter()
  subprocess.run([sys.executable, "-m", "padinv_jax.convert.main", ckpt, model,
                  "--format", "padinv", "--overwrite"], check=True)
  print(f"  converted {res} px in {time.perf_counter() - t0:.0f} s",
        flush=True)
  return {"checkpoint": ckpt, "model": model}



# ----------------------------------------------------------------------------
# Parent.


def run_child(args, case: dict, paths: dict, ynn: bool) -> dict:
  env = dict(os.environ)
  flags = env.get("XLA_FLAGS", "").replace(YNN_FLAG, "").strip()
  env["XLA_FLAGS"] = (flags + " " + YNN_FLAG).strip() if ynn else flags
  cmd = [sys.executable, os.path.abspath(__file__), "--child", case["code"],
         "--official", args.official, "--res", str(case["res"]),
         "--batch", str(case["batch"]), "--remat", case.get("remat", "none"),
         "--accum", str(case.get("accum", 1)),
         "--dtype", case.get("dtype", "float32"),
         "--checkpoint", paths["checkpoint"], "--model", paths["model"],
         "--warmup", str(args.warmup), "--reps", str(args.reps),
         "--what", case.get("what", "train")]
  if case.get("accum_unroll"):
    cmd.append("--accum-unroll")
  if case.get("phases"):
    cmd.append("--phases")
  t = time.perf_counter()
  p = subprocess.run(cmd, env=env, capture_output=True, text=True)
  wall = time.perf_counter() - t
  row = dict(case)
  row["wall_s"] = wall
  lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
  if p.returncode or not lines:
    err = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
    row["error"] = f"exit {p.returncode}: {err}"
    if p.returncode in (-9, 137):
      row["error"] = "killed (out of memory?)"
    return row
  row.update(json.loads(lines[-1][len("RESULT "):]))
  row["img_s"] = case["batch"] / row["step_s"]
  return row


def fmt(v, f):
  return "-" if v is None else format(v, f)


def print_rows(rows):
  cols = [("res", "G px", "d"), ("batch", "N", "d"), ("label", "code", "s"),
          ("step_s", "step s", ".2f"), ("img_s", "img/s", ".3f"),
          ("vs_official", "x official", ".2f"),
          ("peak_mb", "peak RSS MB", ".0f"),
          ("rss_loaded_mb", "RSS loaded MB", ".0f"),
          ("rss_state_mb", "RSS state MB", ".0f"),
          ("xla_temp_mb", "XLA temp MB", ".0f"),
          ("compile_s", "compile s", ".0f"), ("loss_step1", "loss 1", ".5f")]
  head, *body = text_table(rows, cols)
  print(head)
  for line, r in zip(body, rows):
    print(line, r.get("error", ""))
  ph = [r for r in rows if "phase_enc_fwd" in r]
  if ph:
    print("\nphases (s, median):")
    print("G px | N | code | " + " | ".join(PHASES) + " | sum")
    for r in ph:
      v = [r["phase_" + k] for k in PHASES]
      print(f"{r['res']} | {r['batch']} | {r['label']} | "
            + " | ".join(f"{x:.3f}" for x in v) + f" | {sum(v):.3f}")


def markdown(rows) -> str:
  """The rows as the markdown table of benchmarks/RESULTS.md."""
  out = ["| G px | N | code | step s | img/s | x official | peak RSS MB | "
         "vs official MB | RSS loaded MB | compile s |",
         "|---|---|---|---|---|---|---|---|---|---|"]
  off = {}
  for r in rows:
    if r["code"] == "official" and "peak_mb" in r:
      off[(r["res"], r["batch"], r.get("what", "train"))] = r
  for r in rows:
    o = off.get((r["res"], r["batch"], r.get("what", "train")))
    dm = (r["peak_mb"] - o["peak_mb"]) if o and "peak_mb" in r else None
    vals = [str(r["res"]), str(r["batch"]), r["label"],
            fmt(r.get("step_s"), ".2f"), fmt(r.get("img_s"), ".3f"),
            fmt(r.get("vs_official"), ".2f"), fmt(r.get("peak_mb"), ".0f"),
            fmt(dm, "+.0f") if r["code"] != "official" else "",
            fmt(r.get("rss_loaded_mb"), ".0f"), fmt(r.get("compile_s"), ".0f")]
    if "error" in r:
      vals[3] = r["error"]
    out.append("| " + " | ".join(vals) + " |")
  return "\n".join(out)


def label(case):
  if case["code"] == "official":
    return "official" + (" invert" if case.get("what") == "invert" else "")
  if case.get("what") == "invert":
    return "jax invert"
  s = f"jax remat={case['remat']}"
  if case.get("accum", 1) > 1:
    s += f" accum={case['accum']}"
    s += " unrolled" if case.get("accum_unroll") else ""
  if case.get("dtype", "float32") != "float32":
    s += f" {case['dtype']}"
  return s


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--official", default=os.environ.get("PADINV_OFFICIAL"),
                 help="root of a checkout of github.com/EzioBy/padinv")
  p.add_argument("--gen-res", default="256,1024")
  p.add_argument("--batch", default="2", help="comma-separated batches")
  p.add_argument("--remat", default="none,encoder,synthesis,both")
  p.add_argument("--accum", default="1",
                 help="comma-separated accum_steps for remat=none")
  p.add_argument("--accum-unroll", action="store_true",
                 help="accumulation unrolled (config.accum_unroll)")
  p.add_argument("--bf16", action="store_true",
                 help="also padinv_jax with bfloat16 compute (remat none)")
  p.add_argument("--phases", action="store_true")
  p.add_argument("--what", default="train", choices=("train", "invert"),
                 help="the training step, or inversion G(E(x)) (eval mode; "
                      "--remat, --accum, --phases do not apply)")
  p.add_argument("--no-official", action="store_true")
  p.add_argument("--ynn", action="store_true",
                 help="XLA:CPU's YNNPACK convolutions for padinv_jax")
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                   "padinv_official_bench"))
  p.add_argument("--json", default=os.path.join(HERE, "results",
                                                "official.json"))
  # Child mode.
  p.add_argument("--child", choices=("official", "jax"))
  p.add_argument("--res", type=int)
  p.add_argument("--dtype", default="float32")
  p.add_argument("--checkpoint")
  p.add_argument("--model")
  a = p.parse_args(argv)
  if not a.official:
    p.error("--official PATH (a checkout of github.com/EzioBy/padinv) is "
            "required; or set PADINV_OFFICIAL")
  if a.child:
    if isinstance(a.remat, str) and "," in a.remat:
      p.error("--child takes one --remat")
    a.accum = int(a.accum)
    a.batch = int(a.batch)
    a.warmup = max(a.warmup, 1)
    if a.what == "invert":
      row = (child_official_invert(a) if a.child == "official"
             else child_jax_invert(a))
    else:
      row = child_official(a) if a.child == "official" else child_jax(a)
    print("RESULT " + json.dumps(row), flush=True)
    return row

  rows = []
  os.makedirs(a.workdir, exist_ok=True)
  for res in [int(r) for r in a.gen_res.split(",")]:
    paths = prepare(a.official, res, os.path.join(a.workdir, f"g{res}"))
    for batch in [int(b) for b in a.batch.split(",")]:
      cases = []
      if a.what == "invert":
        cases = [{"code": c, "what": "invert", "remat": "none"}
                 for c in (("jax",) if a.no_official
                           else ("official", "jax"))]
      elif not a.no_official:
        cases.append({"code": "official", "phases": a.phases})
      remats = [r for r in a.remat.split(",") if r]
      for i, remat in enumerate(remats if a.what == "train" else ()):
        cases.append({"code": "jax", "remat": remat,
                      "phases": a.phases and i == 0})
      for acc in [int(x) for x in a.accum.split(",")]:
        if acc > 1 and a.what == "train":
          cases.append({"code": "jax", "remat": "none", "accum": acc,
                        "accum_unroll": a.accum_unroll})
      if a.bf16 and a.what == "train":
        cases.append({"code": "jax", "remat": "none", "dtype": "bfloat16"})
      official_row = None
      for case in cases:
        case.update(res=res, batch=batch)
        case["label"] = label(case)
        print(f"[{res} px, batch {batch}] {case['label']} ...", flush=True)
        row = run_child(a, case, paths, a.ynn)
        if case["code"] == "official":
          official_row = row
        if (official_row and "step_s" in official_row and "step_s" in row):
          row["vs_official"] = official_row["step_s"] / row["step_s"]
          k = "loss_step1" if "loss_step1" in row else "out_mean_abs"
          if k in row and k in official_row:
            row["rel_diff_" + k] = (abs(row[k] - official_row[k])
                                    / abs(official_row[k]))
        print("  " + ", ".join(f"{k}={row[k]:.3g}" for k in (
            "step_s", "peak_mb", "vs_official") if k in row)
              + (f" ERROR {row['error']}" if "error" in row else ""),
              flush=True)
        rows.append(row)
  print()
  print_rows(rows)
  print()
  print(markdown(rows))
  import platform  # pylint: disable=import-outside-toplevel
  info = {"cores": os.cpu_count(), "python": platform.python_version(),
          "loadavg_end": os.getloadavg(), "ynn": a.ynn,
          "date": time.strftime("%Y-%m-%d %H:%M")}
  os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
  with open(a.json, "w") as f:
    json.dump({"machine": info, "rows": rows}, f, indent=1)
  print(f"\nwrote {a.json}")
  return rows


if __name__ == "__main__":
  main()
