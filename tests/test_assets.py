"""The assets embedded in the package load, pass their checks and fit the budget."""

import os

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
