"""The assets embedded in the package load, pass their checks and fit the budget."""

import os

import jax
import numpy as np
import pytest

import padinv_jax
from padinv_jax.data import embedded
from padinv_jax.models import classifier as clf
from padinv_jax.storage import assets
from padinv_jax.storage import part_dir

ROOT = os.path.join(os.path.dirname(padinv_jax.__file__), "assets")


def test_all_assets_fit_the_25_mb_budget():
  total = sum(os.path.getsize(os.path.join(d, f))
              for d, _, fs in os.walk(ROOT) for f in fs)
  assert total < 25 * 2 ** 20, total


def test_every_asset_has_a_card_and_the_licence_notice():
  assert os.path.isfile(os.path.join(ROOT, "LICENSE-fashion-mnist.txt"))
  for name in assets.names():
    assert os.path.isfile(os.path.join(ROOT, name, "CARD.md")), name


def test_held_out_test_images():
  x, y = embedded.fashion_test_images()
  assert x.shape == (300, 32, 32, 3) and x.dtype == np.uint8
  assert np.bincount(y, minlength=10).tolist() == [30] * 10
  assert x[:, :2].max() == 0  # the 28 px garments sit on a black canvas


def test_classifier_part_loads():
  v = part_dir.load_part(os.path.join(ROOT, "fashion_classifier"),
                         "classifier")
  cfg = clf.classifier_config()
  x, _ = embedded.fashion_test_images()
  logits, feats = clf.apply(v, x[:8].astype(np.float32) / 127.5 - 1,
                            config=cfg)
  assert logits.shape == (8, 10) and feats.shape == (8, cfg.feature_dim)


@pytest.mark.skipif("fashion32" not in assets.names(),
                    reason="the trained generator is not embedded yet")
def test_the_generator_loads_by_short_name():
  model = padinv_jax.load("fashion32")
  assert model.config.generator.resolution == 32
  z = np.random.default_rng(0).standard_normal((4, 128)).astype(np.float32)
  img = np.asarray(model.synthesize(model.mapping(z)))
  assert img.shape == (4, 32, 32, 3) and np.isfinite(img).all()
  assert -1.5 < img.mean() < 0.5  # mostly black canvas, not noise


@pytest.mark.skipif(not {"fashion32-padinv", "fashion32-psp"} <= set(
    assets.names()), reason="the encoders are not embedded yet")
@pytest.mark.parametrize("name,padded", [("fashion32-padinv", True),
                                         ("fashion32-psp", False)])
def test_the_encoders_load_and_reconstruct_held_out_images(name, padded):
  model = padinv_jax.load(name)
  gen = padinv_jax.load("fashion32")
  for a, b in zip(jax.tree_util.tree_leaves(gen.params["generator"]),
                  jax.tree_util.tree_leaves(model.params["generator"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  x, _ = embedded.fashion_test_images()
  ws, pads = model.invert(x[:60])
  assert ws.shape == (60, 8, 128) and bool(pads) == padded
  y = np.asarray(model.synthesize(ws, pads))
  mse = float(np.mean((y - (x[:60] / 127.5 - 1)) ** 2))
  # Measured 0.04-0.05 (cards); an untrained or damaged encoder is > 0.3.
  assert mse < 0.08, mse


@pytest.mark.skipif("fashion32-padinv" not in assets.names(),
                    reason="the encoders are not embedded yet")
def test_bfloat16_synthesis_holds_on_the_trained_generator():
  """Issue 16's bound on a TRAINED network: bf16 convolutions (params,
  demodulation, noise, skip sum in f32) within 40 dB PSNR of float32, for
  generator samples and for PadInv's padded reconstructions."""
  from padinv_jax.models import functional
  model = padinv_jax.load("fashion32-padinv")
  g, cfg = model.params["generator"], model.config
  z = jax.random.normal(jax.random.PRNGKey(0), (16, cfg.generator.z_dim))
  x, _ = embedded.fashion_test_images()
  ws_e, pads = model.invert(x[:16])
  for ws, p in ((functional.mapping(g, z, config=cfg), None), (ws_e, pads)):
    run = lambda dt: np.asarray(functional.synthesize(g, ws, p, config=cfg,
                                                      dtype=dt), np.float64)
    f32, bf16 = run(jax.numpy.float32), run(jax.numpy.bfloat16)
    assert not np.array_equal(f32, bf16)  # bf16 really ran
    mse = np.mean((f32 - bf16) ** 2, axis=(1, 2, 3))
    psnr = 10 * np.log10(4.0 / np.maximum(mse, 1e-20))
    assert psnr.min() >= 40.0, psnr


@pytest.mark.skipif("fashion32-padinv" not in assets.names(),
                    reason="the encoders are not embedded yet")
def test_bfloat16_encoder_holds_on_the_trained_encoder():
  """bf16 convolutions in the TRAINED PadInv encoder (kernels, BatchNorm,
  PReLU, SE, FPN sums and heads' dense in f32): its codes' offsets from
  w_avg and its padding maps within a few per cent of float32, and the
  reconstructions within 40 dB PSNR of the float32 encoder's (measured
  2026-12-02: 1.1 %, 0.4-0.5 %, >= 56 dB)."""
  from padinv_jax.inversion import core
  from padinv_jax.models import functional
  model = padinv_jax.load("fashion32-padinv")
  cfg, v = model.config, model.params
  x = jax.numpy.asarray(embedded.fashion_test_images()[0][:16])
  w_avg = np.asarray(v["encoder"]["buffers"]["w_avg"], np.float64)
  out = {}
  for dt in ("float32", "bfloat16"):
    ws, pads = core.invert(v, x, config=cfg, dtype=dt)
    img = functional.synthesize(v["generator"], ws, pads, config=cfg)
    out[dt] = (np.asarray(ws, np.float64) - w_avg,
               {k: np.asarray(p, np.float64) for k, p in pads.items()},
               np.asarray(img, np.float64))
  (d32, p32, i32), (d16, p16, i16) = out["float32"], out["bfloat16"]
  assert not np.array_equal(d32, d16)  # bf16 really ran
  rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)
  assert rel(d16, d32) < 0.03, rel(d16, d32)
  for k in p32:
    assert rel(p16[k], p32[k]) < 0.02, (k, rel(p16[k], p32[k]))
  psnr = 10 * np.log10(4.0 / np.mean((i16 - i32) ** 2, axis=(1, 2, 3)))
  assert psnr.min() >= 40.0, psnr
