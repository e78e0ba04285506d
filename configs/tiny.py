"""Tiny demo: a small random StyleGAN2 (32 px) and a small encoder, trained on
an embedded dataset made on the fly from the generator itself (plus shifted,
cropped and flipped images outside its range). No download, no weights.

  python train.py --config configs/tiny.py --workdir demo_out

Expected runtime: about a minute on a 2-core CPU. It shows that the whole
pipeline trains (the loss falls) and writes input | reconstruction grids;
with a random generator and random loss networks it says nothing about the
quality of a real PadInv encoder.
"""

from configs import ffhq1024
from padinv_jax.models import config as model_lib


def get_config():
  c = ffhq1024.get_config()
  c.model = model_lib.tiny_model_config(resolution=32)
  # A 64 px encoder input and exactly num_ws codes keep the graph (98 head
  # convs at full size) small enough to compile in seconds.
  c.model.encoder.input_size = 64
  c.model.encoder.codes_per_level = (3, 4, 1)
  c.data.resolution = 64
  c.data.dataset = "demo"
  c.data.num_workers = 1
  c.data.mirror = False
  c.data.num_demo_images = 64
  c.data.num_eval_images = 16
  c.loss.lpips = 0.0
  c.loss.id = 0.0
  c.loss.allow_random_loss_nets = True
  c.optim.lr = 1e-3
  c.batch_size = 8
  c.num_steps = 150
  c.log_every = 10
  c.image_every = 50
  c.eval_every = 50
  c.ckpt_every = 50
  c.keep_checkpoints = 2
  return c
