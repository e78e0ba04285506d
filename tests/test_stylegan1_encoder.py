"""The encoder trains against a StyleGAN1 generator, in PadInv and pSp modes."""

import importlib

import numpy as np
import pytest

from padinv_jax.training import trainer


@pytest.mark.parametrize("padding", [True, False])
def test_encoder_trains_on_a_tiny_stylegan1(tmp_path, padding):
  cfg = importlib.import_module("configs.tiny").get_config()
  cfg.model.generator.family = "stylegan1"
  cfg.model.encoder.use_padding_space = padding
  cfg.progress = False
  cfg.num_devices = 1
  cfg.num_steps = 40
  cfg.eval_every = 40
  cfg.ckpt_every = 40
  final = trainer.train_and_evaluate(cfg, str(tmp_path))
  first, last = final["history"][0]["loss"], final["history"][-1]["loss"]
  assert np.isfinite(last) and last < 0.8 * first, (first, last)
  assert np.isfinite(final["eval"]["mse"])


@pytest.mark.parametrize("name,padding", [("celebahq_stylegan1", True),
                                          ("psp_celebahq_stylegan1", False)])
def test_fig_s7_configs_are_stylegan1(name, padding):
  from padinv_jax.models import config as config_lib  # pylint: disable=g-import-not-at-top
  from padinv_jax.models import encoder as encoder_lib  # pylint: disable=g-import-not-at-top
  cfg = importlib.import_module(f"configs.{name}").get_config()
  g = cfg.model.generator
  assert (g.family, g.resolution, g.channel_base) == ("stylegan1", 1024,
                                                      16384)
  assert config_lib.channels(g, 32) == 512 == cfg.model.encoder.fpn_channels
  assert cfg.model.encoder.use_padding_space is padding
  encoder_lib.check_compatible(cfg.model)
