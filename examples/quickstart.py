# %% [markdown]
# # padinv_jax quickstart: inversion, blending, interpolation and editing
#
# Every step is a pure function of arrays (``padinv_jax.inversion.apps``,
# ``padinv_jax.invert`` / ``synthesize``), so it composes with ``jax.jit``.
# Run it as a script or cell by cell (VS Code / Jupytext ``# %%`` cells):
#
#     python examples/quickstart.py --model weights/padinv-ffhq-1024 \
#         --images my_faces/ --out quickstart_out
#
# Without ``--model`` it builds a tiny random model first (no download; the
# pictures are then meaningless, but every call is the real one). Without
# ``--images`` it uses synthetic pictures.

# %%
import argparse
import functools
import os
import sys

import jax
import numpy as np

from padinv_jax.inversion import apps
from padinv_jax.models import config as config_lib
from padinv_jax.models import functional
from padinv_jax.data import images_io
from padinv_jax.storage import model_dir

parser = argparse.ArgumentParser(description="padinv_jax quickstart")
parser.add_argument("--model", help="model directory (default: build a tiny "
                    "random one)")
parser.add_argument("--images", help="folder of images (default: synthetic)")
parser.add_argument("--out", default="quickstart_out", help="output folder")
args, _ = parser.parse_known_args(sys.argv[1:] if __name__ == "__main__"
                                  else [])
os.makedirs(args.out, exist_ok=True)

# %% [markdown]
# ## A model directory
# A converted PadInv checkpoint (``padinv-convert``), or a tiny random model
# built with the public init functions and written with ``save_model``.

# %%
if args.model is None:
  from padinv_jax.models import encoder as encoder_lib
  cfg = config_lib.tiny_model_config(resolution=32)
  params = {
      "generator": functional.init_generator(jax.random.key(0), cfg),
      "encoder": encoder_lib.init_encoder(jax.random.key(1), cfg)}
  args.model = os.path.join(args.out, "tiny_model")
  model_dir.save_model(args.model, cfg, params, overwrite=True)
model = model_dir.load(args.model)
cfg, params = model.config, model.params
print(model)

# %% [markdown]
# ## Images: uint8 [N, H, W, 3] (other sizes are resized to the encoder's)

# %%
size = int(cfg.encoder.input_size)
if args.images:
  from padinv_jax.cli import files as cli_io
  files = cli_io.collect_images([args.images])[:4]
  images = cli_io.read_images(files, size)
else:
  yy, xx = np.mgrid[0:size, 0:size] / size
  images = np.stack([
      np.stack([np.sin(2 * np.pi * (f * xx + g * yy) + c)
                for c in (0.0, 2.0, 4.0)], -1)
      for f, g in ((1, 0.5), (0.3, 2), (2, 1.5), (0.5, 0.5))])
  images = ((images * 0.45 + 0.5) * 255).astype(np.uint8)
print("images", images.shape)

# %% [markdown]
# ## Inversion: (W+, paddings) = E(x), x_hat = G(W+, paddings)

# %%
ws, pads = model.invert(images)
recon = model.synthesize(ws, pads)
print("ws", ws.shape, "paddings", {k: v.shape for k, v in pads.items()})
images_io.save_png(os.path.join(args.out, "inversion.png"),
                   images_io.make_grid([[x, y] for x, y in zip(images,
                                                               recon)]))

# %% [markdown]
# ## Blending: the layout (padding space) of A with the details (W+) of B

# %%
blend = jax.jit(functools.partial(apps.blend, config=cfg))
a, b = 0, 1
mixed = blend(params["generator"], ws[b:b + 1],
              {k: v[a:a + 1] for k, v in pads.items()})
images_io.save_png(os.path.join(args.out, "blending.png"), images_io.make_grid(
    [[images[a], images[b], recon[a], recon[b], mixed[0]]]))

# %% [markdown]
# ## Interpolation from A to B in W+, in the padding space, and in both

# %%
code = lambda i: (ws[i:i + 1], {k: v[i:i + 1] for k, v in pads.items()})
rows = []
for space in apps.SPACES:
  steps = apps.interpolate(code(a), code(b), 5, space=space)
  rows.append(list(model.synthesize(*apps.flatten_steps(steps))))
images_io.save_png(os.path.join(args.out, "interpolation.png"),
                   images_io.make_grid(rows))

# %% [markdown]
# ## Editing
# One-pair customised editing: the change from image 2 to image 3 applied to
# image 0 (in the padding space: spatial attributes), and an off-the-shelf
# W+ direction (InterFaceGAN / LowRankGAN; random here) on the first codes.

# %%
edit = jax.jit(functools.partial(apps.edit_with_pair, space="padding"))
row = [recon[0]]
for alpha in (0.5, 1.0, 1.5):
  e_ws, e_pads = edit(code(2), code(3), code(0), alpha)
  row.append(model.synthesize(e_ws, e_pads)[0])
direction = apps.check_direction(
    np.random.RandomState(0).randn(int(cfg.generator.w_dim)), int(
        cfg.generator.w_dim), config_lib.num_ws(cfg.generator))
for alpha in (-3.0, 3.0):
  d_ws = apps.apply_direction(ws[:1], direction, alpha, layers=slice(0, 4))
  row.append(model.synthesize(d_ws, code(0)[1])[0])
images_io.save_png(os.path.join(args.out, "editing.png"),
                   images_io.make_grid([row]))

# %% [markdown]
# ## Codes files: what ``padinv invert`` writes and ``padinv synthesize`` reads

# %%
path = os.path.join(args.out, "codes0.npz")
apps.save_codes(path, *code(0), num_ws=config_lib.num_ws(cfg.generator))
ws0, pads0, meta = apps.load_codes(path)
assert np.array_equal(ws0, np.asarray(ws[:1]))
print("wrote", sorted(os.listdir(args.out)), "to", args.out)
