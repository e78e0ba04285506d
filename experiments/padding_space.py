"""W+ alone vs W+ plus the padding space, at small scale (the paper's claim).

The paper's central claim: the padding space lets a frozen StyleGAN2
reconstruct images, above all images whose layout the generator cannot
produce (shifted, cropped), better than the latent space W+ alone. This
script checks it on the tiny configuration (configs/tiny.py: a random 32 px
StyleGAN2, no download) in two ways, at equal budget:

  (a) optimisation: Adam on the codes for K steps from the same start (the
      generator's w_avg and its own constants, i.e. plain StyleGAN2's image
      at w_avg), moving W+ only, or W+ and the padding maps
      (padinv_jax.inversion.refinement.refine with optimize="w" / "both");
  (b) encoders: the tiny config trained twice with
      padinv_jax.training.trainer.train_and_evaluate, use_padding_space True / False,
      same steps, seed and data; then the same encoders followed by K steps
      of refinement (what `padinv invert --refine K` does).

Test images are new generator samples (seed differs from training):
"plain" (in range: exactly what the generator makes from one w),
"shift" (translated by up to 1/8 of the side) and "crop" (a 50-85 % crop
resized back up), made by padinv_jax.data.demo_data. Metrics are computed at the
generator's resolution (the encoder's input average-pooled down, as the
training loss does): MSE in [-1, 1] units, PSNR and SSIM. LPIPS is left out:
only random-weight LPIPS exists offline, and its numbers would mean nothing.

  python experiments/padding_space.py --workdir /tmp/padding_space \
      --out docs

Writes OUT/padding_space.md (table), OUT/padding_space.png (curves),
OUT/padding_space_examples.png and OUT/padding_space.json. Trained encoders
stay in WORKDIR; a second run reuses them.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from configs import tiny  # pylint: disable=g-import-not-at-top,wrong-import-position
from padinv_jax.inversion import apps  # pylint: disable=wrong-import-position
from padinv_jax.data import demo_data  # pylint: disable=wrong-import-position
from padinv_jax.models import encoder as encoder_lib  # pylint: disable=wrong-import-position
from padinv_jax.models import functional  # pylint: disable=wrong-import-position
from padinv_jax.data import images_io  # pylint: disable=wrong-import-position
from padinv_jax.inversion import core as inversion  # pylint: disable=wrong-import-position
from padinv_jax.evaluation import metrics  # pylint: disable=wrong-import-position
from padinv_jax.storage import model_dir  # pylint: disable=wrong-import-position
from padinv_jax.inversion import refinement  # pylint: disable=wrong-import-position
from padinv_jax.training import trainer  # pylint: disable=wrong-import-position
from padinv_jax.models.config import model_config  # pylint: disable=wrong-import-position

KINDS = ("plain", "shift", "crop")
SPACES = {"W+": "w", "W+ & padding": "both"}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--workdir", default="/tmp/padding_space",
                 help="training runs (reused when present)")
  p.add_argument("--out", default="docs", help="where the results go")
  p.add_argument("--train-steps", type=int, default=1000)
  p.add_argument("--train-images", type=int, default=1024,
                 help="demo training images (configs/tiny.py has 64, which "
                      "the encoder memorises)")
  p.add_argument("--input-size", type=int, default=64,
                 help="encoder input (configs/tiny.py has 256; 64 keeps the "
                      "two trainings to minutes on a 2-core CPU)")
  p.add_argument("--opt-steps", type=int, default=100, help="K")
  p.add_argument("--lr", type=float, default=0.03, help="Adam lr of (a)")
  p.add_argument("--num-images", type=int, default=8, help="per kind")
  p.add_argument("--seed", type=int, default=1234, help="test images")
  p.add_argument("--rgb-scale", type=float, default=0.25,
                 help="ToRGB scale of the random generator (1: as "
                      "configs/tiny.py; see make_generator)")
  return p.parse_args(argv)


def make_generator(args) -> str:
  """configs/tiny.py's random generator with its RGB output scaled down.

  PyTorch's default init gives a random StyleGAN2 whose images reach +-5
  (a third of the pixels outside [-1, 1]); 8-bit targets clip them, so even
  a sample's own w would not reconstruct it. ToRGB is linear and the skip
  architecture sums the ToRGB outputs, so scaling every ToRGB weight and
  bias by s scales the images by s and changes nothing else.
  """
  path = os.path.join(args.workdir, f"generator_rgb{args.rgb_scale:g}")
  if not os.path.isdir(path):
    c = tiny.get_config()
    model_cfg, gen_vars, _ = trainer.load_generator(c)
    syn = dict(gen_vars["params"]["synthesis"])
    for name in syn:
      if name.startswith("torgb"):
        syn[name] = dict(syn[name], weight=syn[name]["weight"] * args.rgb_scale,
                         bias=syn[name]["bias"] * args.rgb_scale)
    gen_vars = {"params": dict(gen_vars["params"], synthesis=syn),
                "buffers": gen_vars["buffers"]}
    gen_cfg = model_config(dict(model_cfg.generator), with_encoder=False)
    model_dir.save_model(path, gen_cfg, {"generator": gen_vars})
  return path


def train_config(args, use_padding_space: bool):
  c = tiny.get_config()
  if args.rgb_scale != 1:
    c.generator_dir = make_generator(args)
  c.model.encoder.input_size = args.input_size
  c.data.resolution = args.input_size
  c.model.encoder.use_padding_space = use_padding_space
  c.data.num_demo_images = args.train_images
  c.num_steps = args.train_steps
  c.ckpt_every = c.eval_every = c.image_every = args.train_steps
  return c


def train_encoder(args, use_padding_space: bool):
  """Train (or reuse) one encoder; returns (model_cfg, params, seconds)."""
  cfg = train_config(args, use_padding_space)
  workdir = os.path.join(args.workdir, "pad" if use_padding_space else "wplus")
  t0 = time.time()
  trainer.train_and_evaluate(cfg, workdir)  # resumes: no steps if done
  seconds = time.time() - t0
  model_cfg, gen_vars, _ = trainer.load_generator(cfg)
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  mngr = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir,
                                                            "checkpoints")))
  state = mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore())
  shapes = jax.eval_shape(functools.partial(encoder_lib.init_encoder,
                                            config=model_cfg),
                          jax.random.PRNGKey(0))
  w_avg = jnp.broadcast_to(gen_vars["buffers"]["mapping"]["w_avg"],
                           shapes["buffers"]["w_avg"].shape)
  params = {"generator": gen_vars,
            "encoder": {"params": state["params"],
                        "batch_stats": state["batch_stats"],
                        "buffers": {"w_avg": w_avg}}}
  return model_cfg, params, seconds


def test_images(gen_vars, model_cfg, args):
  """{kind: uint8 [N, s, s, 3]} at the encoder's input size."""
  return {k: demo_data.make_demo_dataset(
      gen_vars, model_cfg, args.num_images, seed=args.seed,
      resolution=args.input_size, fractions=((k, 1.0),)) for k in KINDS}


def _measure(gen_vars, images, ws, pads, *, config):
  x = inversion.prepare_images(images, images.shape[1], resize=None)
  y = functional.synthesize(gen_vars, ws, pads, config=config)
  x = metrics.downsample(x, y.shape[1], "avgpool")
  return {"mse": metrics.mse(x, y), "psnr": metrics.psnr(x, y),
          "ssim": metrics.ssim(x, y)}, y


_MEASURE = {}


def measure(gen_vars, images, ws, pads, gen_cfg):
  if "f" not in _MEASURE:  # one config per run
    _MEASURE["f"] = jax.jit(functools.partial(_measure, config=gen_cfg))
  m, y = _MEASURE["f"](gen_vars, images, ws, dict(pads))
  return {k: float(np.mean(v)) for k, v in m.items()}, np.asarray(y)


def run(args):
  t_start = time.time()
  jax.config.update("jax_default_matmul_precision", "highest")
  encoders, train_s = {}, {}
  for name, use_pad in (("W+ & padding", True), ("W+", False)):
    model_cfg, params, train_s[name] = train_encoder(args, use_pad)
    encoders[name] = params
  gen_vars, gen_cfg = params["generator"], model_cfg.generator
  images = test_images(gen_vars, model_cfg, args)
  n = args.num_images

  invert = {name: jax.jit(functools.partial(
      inversion.invert, config=train_config(args, name != "W+").model))
            for name in encoders}
  refiners = {space: jax.jit(functools.partial(
      refinement.refine, config=gen_cfg, steps=args.opt_steps, optimize=opt))
              for space, opt in SPACES.items()}
  const_pads = apps.generator_paddings(gen_vars, n, config=gen_cfg)
  rows, curves, examples = [], {}, {}
  # The floor for "plain": each sample's own w. Targets are 8-bit and clipped
  # to [-1, 1] while G's output is not, so even the true code has some error.
  z = jax.random.normal(jax.random.PRNGKey(args.seed), (n, gen_cfg.z_dim))
  true_ws = functional.mapping(gen_vars, z, config=gen_cfg)
  floor, _ = measure(gen_vars, images["plain"], true_ws, const_pads, gen_cfg)
  for kind in KINDS:
    x = images[kind]
    for space in SPACES:
      enc_ws, enc_pads = invert[space](encoders[space], x)
      num_codes = enc_ws.shape[1]
      starts = {
          "optimisation from w_avg": (
              apps.average_ws(gen_vars, n, config=gen_cfg,
                              num_codes=num_codes), const_pads, args.lr),
          # The pSp encoder has no maps: the constants are exactly none.
          f"encoder + {args.opt_steps}-step refinement": (
              enc_ws, enc_pads or const_pads, args.lr)}
      m, y = measure(gen_vars, x, enc_ws, enc_pads or const_pads, gen_cfg)
      rows.append({"kind": kind, "method": "encoder", "space": space, **m})
      examples[(kind, "encoder", space)] = y
      for method, (ws0, pads0, lr) in starts.items():
        ws, pads, losses = refiners[space](gen_vars, x, ws0, pads0, lr=lr)
        m, y = measure(gen_vars, x, ws, pads, gen_cfg)
        rows.append({"kind": kind, "method": method, "space": space, **m})
        curves[(kind, method, space)] = np.asarray(losses).tolist() + [
            m["mse"]]
        examples[(kind, method, space)] = y
      print(f"{kind:6s} {space:13s} done ({time.time() - t_start:.0f} s)",
            flush=True)
  return dict(rows=rows, curves=curves, examples=examples, images=images,
              floor=floor,
              train_s=train_s, total_s=time.time() - t_start)


def table(rows) -> str:
  """Markdown: one row per (method, kind), W+ vs W+ & padding side by side."""
  lines = ["| method | images | MSE W+ | MSE W+ & pad | PSNR W+ | "
           "PSNR W+ & pad | SSIM W+ | SSIM W+ & pad |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
  methods = list(dict.fromkeys(r["method"] for r in rows))
  for method in methods:
    for kind in KINDS:
      get = {r["space"]: r for r in rows
             if r["method"] == method and r["kind"] == kind}
      a, b = get["W+"], get["W+ & padding"]
      lines.append(
          f"| {method} | {kind} | {a['mse']:.4f} | {b['mse']:.4f} | "
          f"{a['psnr']:.2f} | {b['psnr']:.2f} | {a['ssim']:.3f} | "
          f"{b['ssim']:.3f} |")
  return "\n".join(lines)


def plot(result, args, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(KINDS), figsize=(4.2 * len(KINDS), 3.6),
                           sharey=True)
  colors = {"W+": "tab:blue", "W+ & padding": "tab:red"}
  for ax, kind in zip(axes, KINDS):
    for (k, method, space), c in result["curves"].items():
      if k != kind:
        continue
      style = "-" if method.startswith("optimisation") else "--"
      label = f"{space}, {'from w_avg' if style == '-' else 'encoder init'}"
      ax.plot(np.arange(len(c)), c, style, color=colors[space], label=label)
    ax.set_yscale("log")
    ax.set_title(f"{kind} images")
    ax.set_xlabel("Adam step")
    ax.grid(alpha=0.3)
  axes[0].set_ylabel("MSE ([-1, 1] units, generator resolution)")
  axes[0].legend(fontsize=8)
  fig.suptitle(f"tiny random {result['resolution']} px StyleGAN2: "
               f"W+ vs W+ & padding space ({args.num_images} images per kind)",
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def example_grid(result, path, k=3):
  """Rows: target, then each method x space; k images per kind."""
  cols = []
  res = result["resolution"]
  for kind in KINDS:
    for i in range(k):
      target = demo_data.to_resolution(result["images"][kind][i:i + 1], res)
      col = [target[0]]
      for (kk, method, space), y in result["examples"].items():
        if kk == kind:
          col.append(np.clip(np.round((y[i] + 1) * 127.5), 0, 255).astype(
              np.uint8))
      cols.append(col)
  rows = [list(r) for r in zip(*cols)]
  grid = images_io.make_grid(rows)
  big = np.repeat(np.repeat(grid, 3, axis=0), 3, axis=1)
  images_io.save_png(path, big)
  return [("target", "")] + [(m, s) for (kk, m, s) in result["examples"]
                             if kk == KINDS[0]]


def main(argv=None):
  args = parse_args(argv)
  result = run(args)
  result["resolution"] = next(iter(result["examples"].values())).shape[1]
  os.makedirs(args.out, exist_ok=True)
  md = table(result["rows"])
  plot(result, args, os.path.join(args.out, "padding_space.png"))
  order = example_grid(result, os.path.join(args.out,
                                            "padding_space_examples.png"))
  with open(os.path.join(args.out, "padding_space.json"), "w") as f:
    json.dump({"args": vars(args), "rows": result["rows"],
               "true_w_floor_plain": result["floor"],
               "train_seconds": result["train_s"],
               "total_seconds": result["total_s"],
               "example_rows": order,
               "curves": {" | ".join(k): v
                          for k, v in result["curves"].items()}}, f, indent=1)
  print(md)
  print("plain images from their own w (floor):", result["floor"])
  print("example rows:", order)
  print(f"total {result['total_s']:.0f} s (training {result['train_s']})")


if __name__ == "__main__":
  main()
