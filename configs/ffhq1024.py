"""PadInv on FFHQ with a 1024 px StyleGAN2 (the paper's face recipe).

Values are those of the official training scripts (DESIGN.md section 3):
MSE 1.0 + LPIPS-alex 0.8 + ID 0.1 + W-norm 0.003, Adam 1e-4, global batch 64,
100k steps, the 1024 px output average-pooled to 256 for the losses.

Command (8 accelerators; first convert the GAN, LPIPS and ArcFace weights, see
README "Use official weights", and prepare the images once with
`python -m padinv_jax.data --name ffhq --train /data/ffhq --data_dir /data/tfds`):

  python train.py --config configs/ffhq1024.py --workdir runs/ffhq1024 \
    --config.generator_dir=weights/stylegan2-ffhq-1024 \
    --config.loss.lpips_weights=weights/lpips-alex \
    --config.loss.arcface_weights=weights/arcface \
    --config.data.dataset=padinv_images/ffhq --config.data.data_dir=/data/tfds

Expected runtime: days on 8 GPUs (the original: about 2 days on 8 V100s).
"""

import ml_collections

from padinv_jax.models import config as model_lib
from padinv_jax.data import pipeline as data_lib


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = model_lib.model_config()
  # A padinv_jax model directory holding the frozen GAN (convert_weights.py).
  # None: a random generator (tiny/demo configs and tests only).
  c.generator_dir = ml_collections.FieldReference(None, field_type=str)
  # Optional: initialise the encoder body from converted ArcFace IR-SE-50.
  c.init_encoder_from_arcface = ml_collections.FieldReference(None,
                                                              field_type=str)

  # Input (padinv_jax.data.pipeline): a TFDS dataset prepared from an image folder
  # or zip with `python -m padinv_jax.data --name ffhq --train DIR_OR_ZIP`.
  c.data = data_lib.default_data_config()
  c.data.dataset = "padinv_images/ffhq"
  # Or give the images directly: the dataset is prepared on first use into
  # data.data_dir (default WORKDIR/tfds); unreadable files are skipped and
  # listed in WORKDIR/skipped_files.json.
  c.data.image_dir = ml_collections.FieldReference(None, field_type=str)
  c.data.eval_image_dir = ml_collections.FieldReference(None, field_type=str)
  c.data.eval_split = "test"  # CelebA-HQ test for faces; skipped if absent
  c.data.mirror = True  # FFHQ is doubled with mirrored copies
  c.data.num_eval_images = 1000  # evaluate on at most this many
  c.data.num_demo_images = 64  # dataset "demo" only (made from G)

  c.loss = ml_collections.ConfigDict()
  c.loss.mse = 1.0
  c.loss.lpips = 0.8
  c.loss.lpips_net = "alex"
  c.loss.id = 0.1
  c.loss.wnorm = 0.003
  c.loss.adv = 0.0
  c.loss.r1_gamma = 10.0
  c.loss.lpips_weights = ml_collections.FieldReference(None, field_type=str)
  c.loss.arcface_weights = ml_collections.FieldReference(None, field_type=str)
  c.loss.discriminator_dir = ml_collections.FieldReference(None,
                                                           field_type=str)
  # Tests and the demo only: use randomly initialised loss networks when no
  # weights are given (the numbers are then not the paper's losses).
  c.loss.allow_random_loss_nets = False
  # How a generator output above 256 px is reduced for the losses.
  c.loss.downsample = "avgpool"

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adam"  # adam | ranger | sgd
  c.optim.lr = 1e-4
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.grad_clamp = 1e5
  # The original always steps (NaN grads -> 0). True skips non-finite losses.
  c.optim.skip_nonfinite = False

  c.d_optim = ml_collections.ConfigDict()
  c.d_optim.lr = 1e-4 * 16 / 17
  c.d_optim.b1 = 0.9 ** (16 / 17)
  c.d_optim.b2 = 0.99 ** (16 / 17)
  c.d_optim.eps = 1e-8

  c.batch_size = 64  # global
  c.num_steps = 100_000
  c.parallel = "jit"  # jit (global-view mesh) | pmap
  c.num_devices = 0  # 0: all devices; k: the first k (single process only)
  c.compute_dtype = "float32"
  # Memory for compute: "none" | "encoder" (per IR-SE unit) | "synthesis"
  # (per generator layer) | "both"; the same update either way.
  c.remat = "none"
  # Gradient accumulation: each step averages the gradients of accum_steps
  # micro-batches of batch_size / accum_steps (memory for time). BatchNorm
  # normalises each micro-batch with its own statistics and updates the
  # running statistics once per micro-batch (train_lib._accumulate).
  c.accum_steps = 1
  # False: the micro-batches run in a loop, one's activations at a time
  # (least memory; on this CPU also the fastest: 12.9 s vs 13.5 s a plain
  # step at batch 2); True: unrolled, XLA overlaps them (more memory;
  # benchmarks/RESULTS.md).
  c.accum_unroll = False
  c.log_every = 50
  c.image_every = 1000
  c.eval_every = 5000
  c.ckpt_every = 5000
  c.keep_checkpoints = 3
  c.progress = True
  return c
