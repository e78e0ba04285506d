"""Small random Hammer / PadInv checkpoints through padinv-convert.

A tiny PadInv encoder (tests/torch_ref/padinv_encoder_ref.py), a random
StyleGAN2 generator under Hammer's key names (weights from
tests/torch_ref/stylegan2_ref.py) and a Hammer discriminator
(tests/torch_ref/discriminator_ref.py) are saved with torch.save in the
official checkpoint layouts, converted with the real command and compared
with the PyTorch references. Tolerance 1e-4 * max(1, max|ref|).
"""

import math

import jax
import numpy as np
import pytest
import torch

from padinv_jax.models import config as config_lib
from padinv_jax.storage import model_dir
from padinv_jax.storage import part_dir
from padinv_jax.models import discriminator as d_lib
from padinv_jax.convert import main as convert_main
from torch_ref import discriminator_ref
from torch_ref import padinv_encoder_ref as enc_ref
from torch_ref import stylegan2_ref as g_ref
from parity import assert_close

GEN = dict(resolution=32, z_dim=16, w_dim=32, mapping_layers=2,
           channel_base=1024, channel_max=32)
ENC = dict(depth=50, stem_channels=8, stage_channels=(8, 16, 32, 32),
           fpn_channels=32, w_dim=32, codes_per_level=(3, 4, 11),
           pad_layer_num=4, pad_units=2)


class ArcFaceLoss(torch.nn.Module):
  """Stands for the nn.Modules a real training checkpoint keeps in 'loss'."""

  def __init__(self):
    super().__init__()
    self.body = torch.nn.Linear(4, 2)


def to_hammer_generator(sd):
  """NVIDIA generator keys -> Hammer's (values unchanged, shapes Hammer's)."""
  out = {}
  for k, v in sd.items():
    p = k.split(".")
    if k == "mapping.w_avg":
      out["w_avg"] = v
    elif p[0] == "mapping":
      out[f"mapping.dense{p[1][2:]}.{p[2]}"] = v
    elif p[2] == "const":
      out["synthesis.early_layer.const"] = v[None]
    elif p[2] == "resample_filter":
      out["synthesis.filter"] = v
    else:
      k_ = int(math.log2(int(p[1][1:]))) - 2
      name = {"conv0": f"layer{2 * k_ - 1}", "conv1": f"layer{2 * k_}",
              "torgb": f"output{k_}"}[p[2]]
      rest = ".".join(p[3:]).replace("affine.", "style.")
      if rest == "noise_const":
        out[f"synthesis.{name}.noise"] = v[None, None]
      elif rest == "resample_filter":
        if p[2] == "conv0":  # Hammer keeps filters on up-sampling layers only
          out[f"synthesis.{name}.filter"] = v
      else:
        out[f"synthesis.{name}.{rest}"] = v
  return out


@pytest.fixture(scope="module")
def nets():
  return make_nets()


def make_nets():
  """Random tiny PadInv encoder + Hammer generator (and references)."""
  g_sd = g_ref.random_state_dict(**GEN, seed=3)
  g_sd["mapping.w_avg"] = torch.randn(GEN["w_dim"],
                                      generator=torch.Generator().manual_seed(4))
  enc = enc_ref.PadInvEncoderRef(**ENC).eval()
  enc_ref.randomize_(enc, seed=5)
  enc.avg_latent = g_sd["mapping.w_avg"].clone()
  e_sd = {k: v.clone() for k, v in enc.state_dict().items()}
  kwargs = {"encoder": dict(model_type="PadInvEncoder", resolution=256,
                            latent_dim=[ENC["w_dim"]] * 18,
                            num_latents_per_level=[3, 4, 11],
                            fpn_channels=ENC["fpn_channels"], network_depth=50,
                            pad_layer_num=4, depth_padding_extractor=2,
                            use_padding_space=True, inplanes=64),
            "generator": dict(model_type="StyleGAN2Generator",
                              resolution=GEN["resolution"],
                              z_dim=GEN["z_dim"], w_dim=GEN["w_dim"],
                              mapping_layers=GEN["mapping_layers"],
                              mapping_fmaps=GEN["w_dim"],
                              fmaps_base=GEN["channel_base"],
                              fmaps_max=GEN["channel_max"])}
  # inplanes is fixed to 64 in PadInv; the tiny net uses 8 stem channels.
  kwargs["encoder"].pop("inplanes")
  return dict(g_sd=g_sd, h_sd=to_hammer_generator(g_sd), enc=enc, e_sd=e_sd,
              kwargs=kwargs)


def train_ckpt(nets, path, kwargs=True, encoder=None):
  ckpt = {"models": {"encoder": encoder or nets["e_sd"],
                     "generator": nets["h_sd"]},
          "loss": {"arcface": ArcFaceLoss(), "mse": torch.nn.MSELoss()},
          "running_metadata": {"iter": 3, "seen_img": 24}}
  if kwargs:
    ckpt["model_kwargs_init"] = nets["kwargs"]
  torch.save(ckpt, str(path))
  return path


def images(n=2, seed=0):
  g = torch.Generator().manual_seed(seed)
  return torch.rand(n, 3, 256, 256, generator=g) * 2 - 1


def test_training_checkpoint_matches_torch(nets, tmp_path, capsys):
  src = train_ckpt(nets, tmp_path / "train.pth")
  dst = tmp_path / "model"
  assert convert_main.run([str(src), str(dst)]) == 0
  out = capsys.readouterr().out
  assert "PadInv training checkpoint" in out and "models.generator" in out
  model = model_dir.load(str(dst))
  x = images()
  with torch.no_grad():
    ws_ref, pads_ref = nets["enc"](x)
  ws, pads = model.invert(x.numpy().transpose(0, 2, 3, 1))
  assert_close(ws, ws_ref, "ws")
  assert set(pads) == set(pads_ref)
  for k in pads:
    assert_close(pads[k], pads_ref[k].numpy().transpose(0, 2, 3, 1), k)
  num_ws = 2 * int(math.log2(GEN["resolution"])) - 2
  want = g_ref.synthesis(nets["g_sd"], ws_ref[:, :num_ws], GEN["resolution"],
                         paddings=pads_ref)
  assert_close(model.synthesize(ws, pads), want.numpy().transpose(0, 2, 3, 1),
               "padded synthesis")


def test_architecture_from_shapes_equals_model_kwargs(nets, tmp_path):
  with_kw = convert_main.convert_file(str(train_ckpt(nets, tmp_path / "a.pth")))
  without = convert_main.convert_file(
      str(train_ckpt(nets, tmp_path / "b.pth", kwargs=False)))
  a, b = with_kw.config.to_dict(), without.config.to_dict()
  # All widths equal channel_max here, so any large channel_base fits them.
  assert a["generator"].pop("channel_base") == 1024
  b["generator"].pop("channel_base")
  assert a == b
  flat_a = jax.tree_util.tree_leaves_with_path(with_kw.params)
  flat_b = dict(jax.tree_util.tree_leaves_with_path(without.params))
  assert len(flat_a) == len(flat_b)
  for path, leaf in flat_a:
    np.testing.assert_array_equal(leaf, flat_b[path])


def test_inconsistent_model_kwargs_refused(nets, tmp_path, capsys):
  bad = dict(nets["kwargs"], encoder=dict(nets["kwargs"]["encoder"],
                                          pad_layer_num=3))
  torch.save({"models": {"encoder": nets["e_sd"], "generator": nets["h_sd"]},
              "model_kwargs_init": bad}, str(tmp_path / "t.pth"))
  assert convert_main.run([str(tmp_path / "t.pth"), str(tmp_path / "m")]) == 2
  err = capsys.readouterr().err.strip()
  assert "pad_layer_num" in err and "\n" not in err
  assert not (tmp_path / "m").exists()


def test_missing_encoder_layer_listed(nets, tmp_path, capsys):
  e_sd = dict(nets["e_sd"])
  del e_sd["latent_heads.5.linear.weight"]
  src = train_ckpt(nets, tmp_path / "t.pth", encoder=e_sd)
  assert convert_main.run([str(src), str(tmp_path / "m")]) == 2
  err = capsys.readouterr().err.strip()
  assert "latent_heads.5.linear.weight" in err and "\n" not in err
  assert not (tmp_path / "m").exists()


def test_gan_checkpoint_generator_and_discriminator(nets, tmp_path, capsys):
  d_cfg = dict(resolution=GEN["resolution"], channel_base=GEN["channel_base"],
               channel_max=GEN["channel_max"], mbstd_group_size=2)
  d_nv = discriminator_ref.make_state_dict(d_cfg, seed=6)
  smooth = {k: v * 1.5 if k == "w_avg" else v for k, v in nets["h_sd"].items()}
  src = tmp_path / "gan.pth"
  torch.save({"models": {"generator": nets["h_sd"], "generator_smooth": smooth,
                         "discriminator": {k: torch.from_numpy(v) for k, v in
                                           discriminator_ref.to_hammer(
                                               d_nv, d_cfg).items()}},
              "model_kwargs_init": {"discriminator": dict(
                  resolution=GEN["resolution"], mbstd_groups=2)}}, str(src))
  assert convert_main.run([str(src), str(tmp_path / "g")]) == 0
  out = capsys.readouterr().out
  assert "generator_smooth" in out and "--entry discriminator" in out
  g = model_dir.load(str(tmp_path / "g"))
  np.testing.assert_array_equal(
      g.params["generator"]["buffers"]["mapping"]["w_avg"], smooth["w_avg"])
  c = g.config.generator
  assert all(config_lib.channels(c, r) == min(1024 // r, 32)
             for r in (4, 8, 16, 32))
  assert convert_main.run([str(src), str(tmp_path / "d"), "--entry",
                           "discriminator"]) == 0
  d_vars = part_dir.load_part(str(tmp_path / "d"), "discriminator")
  cfg = d_lib.discriminator_config(**d_cfg)
  x = np.random.default_rng(0).uniform(-1, 1, (4, 32, 32, 3)).astype(
      np.float32)
  got = d_lib.d_scores(d_vars, x, config=cfg)
  want = discriminator_ref.forward(d_nv, torch.from_numpy(
      x.transpose(0, 3, 1, 2)), d_cfg)
  assert_close(got, want.numpy()[:, 0], "D scores")


def test_tiny_model_config_shapes_agree():
  # The tiny PadInv config the rest of the project uses is what these files
  # describe, so converted directories plug into the same code paths.
  cfg = config_lib.model_config(
      dict(resolution=32, z_dim=16, w_dim=32, mapping_layers=2,
           channel_base=1024, channel_max=32),
      dict(ENC))
  assert cfg.encoder.pad_layer_num == cfg.generator.pad_layer_num == 4
