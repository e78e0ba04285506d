"""PadInv training and Hammer GAN checkpoints through padinv-convert (golden).

The official PadInv encoder + generator weights are regenerated from the
golden spec (../shared/golden/detweights.py), written with torch.save in the
layouts the original writes (training checkpoint with whole nn.Modules under
'loss'; GAN checkpoint with generator / generator_smooth), converted with the
real command and compared with the official outputs in
padinv_visible_ref.npz: inversion (ws, padding maps), padded synthesis of G,
generator_smooth synthesis with and without padding maps.
Tolerance 1e-4 * max(1, max|ref|).
"""

import functools
import importlib.util
import json
import os

import jax
import numpy as np
import pytest
import torch

import padinv_jax
from padinv_jax.inversion import core as inversion
from padinv_jax.storage import model_dir
from padinv_jax.convert import main as convert_main
from parity import assert_close


class PerceptualLoss(torch.nn.Module):
  """Stands for the LPIPS / ArcFace modules a real training checkpoint holds."""

  def __init__(self):
    super().__init__()
    self.net = torch.nn.Conv2d(3, 4, 3)

  def __setstate__(self, state):  # must never run while converting
    raise AssertionError("the loss module's code ran")


def nhwc(a):
  return np.asarray(a).transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def golden(golden_dir, tmp_path_factory):
  spec_mod = importlib.util.spec_from_file_location(
      "detweights", os.path.join(golden_dir, "detweights.py"))
  det = importlib.util.module_from_spec(spec_mod)
  spec_mod.loader.exec_module(det)
  with open(os.path.join(golden_dir, "padinv_visible_spec.json")) as f:
    spec = json.load(f)
  fixed = dict(np.load(os.path.join(golden_dir, "padinv_visible_fixed.npz")))
  seeds = spec["seeds"]

  def make(part, seed):
    # from_numpy shares memory (the encoder alone is 1.1 GB of float32).
    return {k: torch.from_numpy(np.asarray(v))
            for k, v in det.make(spec[part], seed, fixed).items()}

  enc = make("encoder", seeds["encoder"])
  gen = make("generator", seeds["generator"])
  gen_s = make("generator", seeds["generator_smooth"])
  kwargs = {"encoder": dict(spec["encoder_kwargs"], model_type="PadInvEncoder"),
            "generator": dict(spec["generator_kwargs"],
                              model_type="StyleGAN2Generator")}
  d = tmp_path_factory.mktemp("padinv_ckpts")
  train = d / "padinv_train.pth"
  torch.save({"models": {"encoder": enc, "generator": gen},
              "model_kwargs_init": kwargs,
              "model_kwargs_train": {}, "running_metadata": {"iter": 10},
              "loss": {"lpips": PerceptualLoss(), "mse": torch.nn.MSELoss()},
              "optimizers": {"encoder": {"state": {}, "param_groups": []}}},
             str(train))
  gan = d / "gan.pth"
  torch.save({"models": {"generator": gen, "generator_smooth": gen_s},
              "model_kwargs_init": {"generator": kwargs["generator"],
                                    "generator_smooth": kwargs["generator"]}},
             str(gan))
  del enc
  ref = dict(np.load(os.path.join(golden_dir, "padinv_visible_ref.npz")))
  return dict(train=train, gan=gan, ref=ref, dir=d, gen=gen)


def test_training_checkpoint_inversion_and_padded_synthesis(golden):
  # The real converter without the write (the encoder is 1.1 GB; writing and
  # loading model directories is covered by the smaller cases).
  result = convert_main.convert_file(str(golden["train"]))
  assert "PadInv training checkpoint" in result.description
  assert "models.generator" in result.description
  cfg, params = result.config, result.params
  r = golden["ref"]
  ws, pads = jax.jit(functools.partial(inversion.invert, config=cfg))(
      params, nhwc(r["images"]))
  assert_close(ws, r["ws"], "ws (eval)")
  for key in ("const", "layer0", "layer2", "layer4", "layer6"):
    assert_close(np.asarray(pads[key])[..., :32], nhwc(r[f"pad_{key}"]),
                 f"padding map {key}")
  img = padinv_jax.synthesize(params["generator"], ws, pads, config=cfg)
  assert_close(img, nhwc(r["image"]), "padded synthesis of G")
  # The encoder's w_avg is the (non-smooth) generator's w_avg.
  np.testing.assert_array_equal(params["encoder"]["buffers"]["w_avg"],
                                golden["gen"]["w_avg"])
  golden["pads"] = {k: np.asarray(v) for k, v in pads.items()}


def test_gan_checkpoint_uses_generator_smooth(golden, capsys):
  dst = golden["dir"] / "gan_model"
  assert convert_main.run([str(golden["gan"]), str(dst)]) == 0
  out = capsys.readouterr().out
  assert "generator_smooth" in out
  model = model_dir.load(str(dst))
  r = golden["ref"]
  assert_close(model.synthesize(r["ws_direct"]), nhwc(r["img_gan"]),
               "generator_smooth synthesis")
  if "pads" not in golden:
    pytest.skip("needs the padding maps of the training-checkpoint test")
  assert_close(model.synthesize(r["ws_direct"], golden["pads"]),
               nhwc(r["img_gan_pad"]), "generator_smooth padded synthesis")


def test_gan_checkpoint_entry_generator(golden):
  dst = golden["dir"] / "gan_g"
  assert convert_main.run([str(golden["gan"]), str(dst), "--entry",
                           "generator"]) == 0
  g = model_dir.load(str(dst)).params["generator"]
  np.testing.assert_array_equal(
      g["params"]["synthesis"]["const"],
      golden["gen"]["synthesis.early_layer.const"][0].numpy().transpose(1, 2, 0))


