"""`padinv evaluate` with LPIPS and ArcFace weights (random part directories).

The numbers must be the library's metrics of each input and its
reconstruction: LPIPS and ID similarity recomputed here with
padinv_jax.losses on the reconstruction made from the codes `padinv invert`
wrote, MSE by hand.
"""

import json

import numpy as np
from PIL import Image

from padinv_jax.inversion import apps
from padinv_jax.cli import main as cli
from padinv_jax.models import functional
from padinv_jax.data import images_io
from padinv_jax.inversion import core as inversion
from padinv_jax.losses import arcface
from padinv_jax.losses import lpips

import apps_testlib

ARC = dict(depth=50, stem_channels=8, stage_channels=[8, 8, 16, 16],
           embedding_dim=16, input_size=112)


def test_evaluate_with_lpips_and_arcface(tmp_path, capsys):
  cfg, params = apps_testlib.save_tiny_model(tmp_path / "model", seed=4)
  lp = apps_testlib.save_random_part(tmp_path / "lpips", "lpips",
                                     {"net": "alex"}, seed=1)
  arc = apps_testlib.save_random_part(tmp_path / "arc", "arcface", ARC, seed=2)
  imgs = tmp_path / "imgs"
  imgs.mkdir()
  for i in range(2):
    Image.fromarray(apps_testlib.random_image(64, 10 + i)).save(
        imgs / f"f{i}.png")
  common = ["--model", str(tmp_path / "model"), "--batch-size", "2"]
  assert cli.main(["invert", str(imgs), "--out", str(tmp_path / "inv")]
                  + common) == 0
  assert cli.main(["evaluate", "--data", str(imgs), "--out",
                   str(tmp_path / "ev"), "--lpips-weights",
                   str(tmp_path / "lpips"), "--arcface-weights",
                   str(tmp_path / "arc")] + common) == 0
  table = capsys.readouterr().out
  assert "LPIPS-alex" in table and "ID sim" in table
  result = json.loads((tmp_path / "ev" / "metrics.json").read_text())
  assert result["metrics"] == ["mse", "psnr", "ssim", "lpips", "id_sim"]

  codes = [apps.load_codes(str(tmp_path / "inv" / "codes" / f"f{i}.npz"))
           for i in range(2)]
  ws = np.concatenate([c[0] for c in codes])
  pads = {k: np.concatenate([c[1][k] for c in codes]) for k in codes[0][1]}
  y = functional.synthesize(params["generator"], ws, pads, config=cfg)
  x = images_io.to_float(np.stack([apps_testlib.random_image(64, 10 + i)
                                   for i in range(2)]))
  x = inversion.resize_images(x, 32)
  want_lpips = np.asarray(lpips.lpips_distance(lp, x, y, "alex"))
  want_id = np.asarray(arcface.id_similarity(arc, x, y))
  for i, row in enumerate(result["per_image"]):
    d = np.asarray(x[i], np.float64) - np.asarray(y[i])
    mse = float(np.mean(d ** 2))
    assert abs(row["mse"] - mse) <= 1e-5 * max(1, mse)
    assert abs(row["lpips"] - want_lpips[i]) <= 1e-4 * max(1, abs(want_lpips[i]))
    assert abs(row["id_sim"] - want_id[i]) <= 1e-4
  assert abs(result["mean"]["lpips"] - float(np.mean(want_lpips))) < 1e-4
