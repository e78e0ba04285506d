"""Optimisation-based refinement (padinv_jax.inversion.refinement) and `padinv invert --refine`.

A tiny random model (tests/apps_testlib.py) and random LPIPS weights: the
tests check what the optimiser does to the codes, not image quality.
"""

import functools

import jax
import numpy as np
import pytest
from PIL import Image

from padinv_jax.inversion import apps
from padinv_jax.cli import main as cli
from padinv_jax.inversion import core as inversion
from padinv_jax.inversion import refinement as refine_lib
from padinv_jax.losses import lpips

import apps_testlib

STEPS = 12


@pytest.fixture(scope="module")
def env():
  cfg = apps_testlib.tiny_config(32)
  params = apps_testlib.random_params(cfg, seed=3)
  images = np.stack([apps_testlib.random_image(64, 20 + i) for i in range(2)])
  ws, pads = jax.jit(functools.partial(inversion.invert, config=cfg))(
      params, images)
  lp = lpips.init_lpips(jax.random.PRNGKey(1), "alex")
  # Positive, LPIPS-like linear heads (PyTorch's default init may be < 0).
  lp = jax.tree_util.tree_map_with_path(
      lambda p, v: abs(v) if "lin" in jax.tree_util.keystr(p) else v, lp)
  loss = jax.jit(functools.partial(refine_lib.reconstruction_loss,
                                   config=cfg))
  return dict(cfg=cfg, gen=params["generator"], params=params, images=images,
              ws=ws, pads=pads, lpips=lp, loss=loss)


def _refine(env, steps, optimize="both", images=None, ws=None, pads=None,
            **kw):
  f = jax.jit(functools.partial(refine_lib.refine, config=env["cfg"],
                                steps=steps, optimize=optimize))
  images = env["images"] if images is None else images
  ws = env["ws"] if ws is None else ws
  pads = env["pads"] if pads is None else pads
  return f(env["gen"], images, ws, pads, **kw)


def test_refinement_lowers_mse_plus_lpips(env):
  ws, pads, losses = _refine(env, STEPS, lpips_vars=env["lpips"])
  before = np.asarray(env["loss"](env["gen"], env["images"], env["ws"],
                                  env["pads"], lpips_vars=env["lpips"]))
  after = np.asarray(env["loss"](env["gen"], env["images"], ws, pads,
                                 lpips_vars=env["lpips"]))
  print("loss per image before", before, "after", after)
  assert losses.shape == (STEPS,)
  # losses[k] is the batch-mean loss before step k.
  np.testing.assert_allclose(losses[0], before.mean(), rtol=1e-5)
  assert np.all(after < 0.9 * before)  # every image, by a clear margin
  assert float(after.mean()) < float(losses[-1])
  # Both spaces moved; the LPIPS term took part (MSE alone ends elsewhere).
  assert not np.allclose(ws, env["ws"])
  assert all(not np.allclose(pads[k], env["pads"][k]) for k in pads)
  ws_mse, _, _ = _refine(env, STEPS)
  assert not np.allclose(ws_mse, ws, atol=1e-6)


def test_zero_steps_returns_the_encoder_codes(env):
  ws, pads, losses = _refine(env, 0, lpips_vars=env["lpips"])
  assert losses.shape == (0,)
  np.testing.assert_array_equal(ws, env["ws"])
  assert sorted(pads) == sorted(env["pads"])
  for k in pads:
    np.testing.assert_array_equal(pads[k], env["pads"][k])


@pytest.mark.parametrize("optimize", ["w", "padding"])
def test_only_the_chosen_space_changes(env, optimize):
  ws, pads, losses = _refine(env, 4, optimize=optimize)
  assert losses[-1] < losses[0]
  same_ws = np.array_equal(ws, env["ws"])
  same_pads = all(np.array_equal(pads[k], env["pads"][k]) for k in pads)
  assert (same_ws, same_pads) == ((False, True) if optimize == "w"
                                  else (True, False))
  # Codes past the generator's num_ws (18 predicted, 8 read) get no gradient.
  np.testing.assert_array_equal(ws[:, 8:], env["ws"][:, 8:])


def test_each_image_refines_independently_of_its_batch(env):
  both, _, _ = _refine(env, 4)
  one, _, _ = _refine(env, 4, images=env["images"][1:], ws=env["ws"][1:],
                      pads={k: v[1:] for k, v in env["pads"].items()})
  np.testing.assert_allclose(one[0], both[1], atol=1e-5)


def test_refine_refuses_bad_arguments(env):
  with pytest.raises(ValueError, match="optimize must be one of"):
    refine_lib.refine(env["gen"], env["images"], env["ws"], env["pads"],
                      config=env["cfg"], steps=1, optimize="z")
  with pytest.raises(ValueError, match="needs padding maps"):
    refine_lib.refine(env["gen"], env["images"], env["ws"], {},
                      config=env["cfg"], steps=1, optimize="padding")


def test_cli_invert_refine_writes_the_refined_codes(tmp_path, env):
  cfg, params = apps_testlib.save_tiny_model(tmp_path / "model", seed=3)
  lp = apps_testlib.save_random_part(tmp_path / "lpips", "lpips",
                                     {"net": "alex"}, seed=1)
  imgs = tmp_path / "imgs"
  imgs.mkdir()
  for i, im in enumerate(env["images"]):
    Image.fromarray(im).save(imgs / f"im{i}.png")
  common = [str(imgs), "--model", str(tmp_path / "model"), "--batch-size",
            "2"]
  assert cli.main(["invert", *common, "--out", str(tmp_path / "plain")]) == 0
  assert cli.main(["invert", *common, "--out", str(tmp_path / "ref"),
                   "--refine", "5", "--refine-lr", "0.02", "--lpips-weights",
                   str(tmp_path / "lpips")]) == 0
  ws, pads = jax.jit(functools.partial(inversion.invert, config=cfg))(
      params, env["images"])
  want_ws, want_pads, _ = jax.jit(functools.partial(
      refine_lib.refine, config=cfg, steps=5))(
          params["generator"], env["images"], ws, pads, lr=0.02,
          lpips_vars=lp)
  for i in range(2):
    plain_ws, _, _ = apps.load_codes(str(tmp_path / "plain" / "codes"
                                         / f"im{i}.npz"))
    got_ws, got_pads, meta = apps.load_codes(str(tmp_path / "ref" / "codes"
                                                 / f"im{i}.npz"))
    assert meta == {"num_ws": 8, "pad_layer_num": 4}
    np.testing.assert_allclose(plain_ws, ws[i:i + 1], atol=1e-5)
    np.testing.assert_allclose(got_ws, want_ws[i:i + 1], atol=1e-4)
    for k in want_pads:
      np.testing.assert_allclose(got_pads[k], want_pads[k][i:i + 1],
                                 atol=1e-4)
    assert not np.allclose(got_ws, plain_ws, atol=1e-4)


def test_cli_refuses_negative_refine(tmp_path, env):
  apps_testlib.save_tiny_model(tmp_path / "model", seed=3)
  Image.fromarray(env["images"][0]).save(tmp_path / "a.png")
  with pytest.raises(SystemExit) as e:
    cli.main(["invert", str(tmp_path / "a.png"), "--model",
              str(tmp_path / "model"), "--out", str(tmp_path / "o"),
              "--refine", "-1"])
  assert e.value.code == 2
