"""rosinality stylegan2-pytorch checkpoints through padinv-convert.

Random weights in rosinality's layout, saved with torch.save as
{'g_ema', 'latent_avg'} (zip and legacy formats), converted, loaded and
compared with an independent PyTorch reference of rosinality's forward pass
(tests/torch_ref/rosinality_ref.py). Tolerance 1e-4 * max(1, max|ref|).
"""

import numpy as np
import pytest
import torch

from padinv_jax.storage import model_dir
from padinv_jax.convert import main as convert_main
from torch_ref import rosinality_ref as ref
from parity import assert_close

SIZE, STYLE, MLP = 16, 16, 3
CHANNELS = {4: 16, 8: 16, 16: 8}


@pytest.mark.parametrize("zip_format", [True, False])
def test_rosinality_checkpoint_matches_torch(tmp_path, zip_format, capsys):
  sd = ref.random_state_dict(SIZE, STYLE, MLP, CHANNELS, seed=1)
  g = torch.Generator().manual_seed(2)
  latent_avg = torch.randn(STYLE, generator=g)
  src = tmp_path / "stylegan2.pt"
  torch.save({"g_ema": sd, "latent_avg": latent_avg, "g": {"x": torch.ones(1)}},
             str(src), _use_new_zipfile_serialization=zip_format)
  dst = tmp_path / "model"
  assert convert_main.run([str(src), str(dst)]) == 0
  assert "rosinality" in capsys.readouterr().out
  model = model_dir.load(str(dst))
  c = model.config.generator
  assert (c.resolution, c.w_dim, c.mapping_layers, c.channel_base,
          c.channel_max) == (16, 16, 3, 128, 16)
  np.testing.assert_array_equal(
      model.params["generator"]["buffers"]["mapping"]["w_avg"], latent_avg)

  z = torch.randn(3, STYLE, generator=g)
  w = ref.mapping(sd, z)
  got = model.mapping(z.numpy())
  assert_close(got, w[:, None].expand(-1, 6, -1), "ws")
  assert_close(model.mapping(z.numpy(), psi=0.7),
               ref.mapping(sd, z, 0.7, latent_avg)[:, None].expand(-1, 6, -1),
               "ws psi 0.7 (all layers)")
  latent = torch.randn(3, 6, STYLE, generator=g)
  want = ref.generate(sd, latent).numpy().transpose(0, 2, 3, 1)
  assert_close(model.synthesize(latent.numpy()), want, "images")


def test_missing_latent_avg_is_estimated_and_said(tmp_path, capsys):
  sd = ref.random_state_dict(SIZE, STYLE, MLP, CHANNELS, seed=3)
  src = tmp_path / "g.pt"
  torch.save({"g_ema": sd}, str(src))
  assert convert_main.run([str(src), str(tmp_path / "m")]) == 0
  assert "latent_avg" in capsys.readouterr().out
  w_avg = model_dir.load(str(tmp_path / "m")).params["generator"]["buffers"][
      "mapping"]["w_avg"]
  z = torch.randn(4096, STYLE, generator=torch.Generator().manual_seed(0))
  want = ref.mapping(sd, z).mean(0)
  # Two independent 4096-sample means of the same distribution.
  spread = ref.mapping(sd, z).std(0) / 64 * 6
  assert np.all(np.abs(np.asarray(w_avg) - want.numpy()) <= spread.numpy())


def test_wrong_blur_kernel_refused(tmp_path, capsys):
  sd = ref.random_state_dict(SIZE, STYLE, MLP, CHANNELS, seed=4)
  sd["convs.0.conv.blur.kernel"] = torch.ones(4, 4)
  src = tmp_path / "g.pt"
  torch.save({"g_ema": sd, "latent_avg": torch.zeros(STYLE)}, str(src))
  assert convert_main.run([str(src), str(tmp_path / "m")]) == 2
  err = capsys.readouterr().err
  assert "convs.0.conv.blur.kernel" in err and not (tmp_path / "m").exists()
