"""padinv-convert --to rosinality: a padinv_jax generator as rosinality's .pt.

The written file is read by torch.load(weights_only=True) (no torch wrote
it), run through the independent PyTorch rosinality reference
(tests/torch_ref/rosinality_ref.py) and compared with padinv_jax's own
synthesis of the same ws; converting it back gives the arrays bit for bit.
"""

import jax
import numpy as np
import pytest
import torch

from padinv_jax.convert import main as convert_main
from padinv_jax.models import config as config_lib
from padinv_jax.models import functional
from padinv_jax.storage import model_dir
from torch_ref import rosinality_ref as ref


@pytest.fixture
def generator_dir(tmp_path):
  cfg = config_lib.model_config(
      dict(resolution=32, z_dim=16, w_dim=16, mapping_layers=3,
           channel_base=512, channel_max=32), with_encoder=False)
  g = functional.init_generator(jax.random.PRNGKey(0), cfg)
  rng = np.random.default_rng(1)
  # Non-trivial biases, noise strengths and w_avg (init leaves them 0).
  g = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.3 * rng.standard_normal(x.shape).astype(np.float32)
      if any(getattr(k, "key", None) in ("bias", "noise_strength", "w_avg")
             for k in p) else x, g)
  path = str(tmp_path / "gen")
  model_dir.save_model(path, cfg, {"generator": g})
  return path, cfg, g


def test_export_matches_the_rosinality_reference(tmp_path, generator_dir,
                                                 capsys):
  path, cfg, g = generator_dir
  out = str(tmp_path / "g.pt")
  assert convert_main.run([path, out, "--to", "rosinality"]) == 0
  assert "mapping layers" in capsys.readouterr().out  # n_mlp 3 != 8 noted
  ckpt = torch.load(out, weights_only=True)
  assert set(ckpt) == {"g_ema", "latent_avg"}
  sd = ckpt["g_ema"]
  np.testing.assert_array_equal(ckpt["latent_avg"].numpy(),
                                np.asarray(g["buffers"]["mapping"]["w_avg"]))
  z = np.random.default_rng(2).standard_normal((3, 16)).astype(np.float32)
  ws = np.asarray(functional.mapping(g, z, config=cfg))
  want = np.asarray(functional.synthesize(g, ws, config=cfg))
  with torch.no_grad():
    w_t = ref.mapping(sd, torch.from_numpy(z))
    got_ws = w_t.numpy()
    got = ref.generate(sd, torch.from_numpy(ws)).numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(got_ws, ws[:, 0], rtol=1e-5, atol=1e-6)
  err = np.max(np.abs(got - want)) / np.max(np.abs(want))
  assert err <= 1e-5, err


def test_export_round_trips_through_the_converter(tmp_path, generator_dir):
  path, _, g = generator_dir
  out = str(tmp_path / "g.pt")
  assert convert_main.run([path, out, "--to", "rosinality"]) == 0
  back = str(tmp_path / "back")
  assert convert_main.run([out, back]) == 0
  g2 = model_dir.load(back).params["generator"]
  for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(g2)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_export_keeps_an_existing_file(tmp_path, generator_dir, capsys):
  path, _, _ = generator_dir
  out = tmp_path / "g.pt"
  out.write_bytes(b"mine")
  assert convert_main.run([path, str(out), "--to", "rosinality"]) == 2
  assert "already exists" in capsys.readouterr().err
  assert out.read_bytes() == b"mine"
