"""Model directories and the inversion API end to end, on tiny random networks.

Variables are drawn at random from jax.eval_shape of the inits (compiling the
real initialisers takes minutes on a loaded 2-core machine); the values only
need to be finite, varied and the same on both sides of each comparison.
"""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from padinv_jax.storage import array_store
from padinv_jax.models import config as config_lib
from padinv_jax.models import functional
from padinv_jax.inversion import core as inversion
from padinv_jax.storage import model_dir

# A 64 px encoder input keeps the IR-SE-50 body cheap to run; the 32 px
# generator needs no downsampling, the 512 px one below exercises it.
ENC = dict(input_size=64)


def _config(resolution=32, with_encoder=True, **enc):
  cfg = config_lib.tiny_model_config(resolution, with_encoder)
  if with_encoder:
    for k, v in {**ENC, **enc}.items():
      cfg.encoder[k] = v
  return cfg


def _random_like(shapes, seed):
  """Finite random arrays for a tree of ShapeDtypeStructs, scaled by fan-in."""
  rng = np.random.default_rng(seed)

  def draw(path, s):
    name = str(getattr(path[-1], "key", path[-1]))
    shape = tuple(s.shape)
    if name == "var":  # BatchNorm running variance: positive
      return rng.uniform(0.5, 1.5, shape).astype(s.dtype)
    fan_in = int(np.prod(shape[:-1])) if len(shape) >= 2 else 1
    x = rng.standard_normal(shape) / np.sqrt(fan_in)
    if len(shape) == 1:
      x = 0.1 * x + (1.0 if name == "bias" and "affine" in str(path) else 0)
    return x.astype(s.dtype)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def _params(cfg, seed=0):
  return _random_like(model_dir.expected_shapes(cfg), seed)


def _images(n, size, seed=0):
  """uint8 images with structure (not spatially constant)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size),
                       indexing="ij")
  base = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy) for c in range(3)], -1)
  x = 127.5 + 90 * base[None] + 30 * rng.standard_normal((n, size, size, 3))
  return np.clip(x, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  cfg = _config()
  params = _params(cfg)
  path = str(tmp_path_factory.mktemp("models") / "tiny")
  model_dir.save_model(path, cfg, params)
  return cfg, params, path


@pytest.fixture(scope="module")
def loaded(saved):
  return model_dir.load(saved[2])


def _assert_tree_equal(a, b):
  fa, fb = array_store.flatten(a), array_store.flatten(b)
  assert sorted(fa) == sorted(fb)
  for k in fa:
    np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]),
                                  err_msg=k)


def test_round_trip_bit_identical(saved, loaded):
  cfg, params, path = saved
  assert sorted(os.listdir(path)) == ["arrays", "config.json"]
  with open(os.path.join(path, "config.json")) as f:
    meta = json.load(f)
  assert meta["format"] == "padinv_jax-model" and meta["version"] == 1
  assert meta["contents"] == ["generator", "encoder"]
  assert loaded.config.to_dict() == cfg.to_dict()
  _assert_tree_equal(loaded.params, params)

  # uint8 into the model, the same pixels as [-1, 1] floats into the pure
  # function: also shows that both input kinds give the same codes.
  x = _images(2, 64)
  ws, pads = loaded.invert(x)
  xf = x.astype(np.float32) / 255.0 * 2.0 - 1.0
  ref_ws, ref_pads = jax.jit(
      lambda p, i: inversion.invert(p, i, config=cfg))(params, xf)
  assert ws.shape == (2, 18, cfg.encoder.w_dim)
  assert sorted(pads) == ["const", "layer0", "layer2", "layer4", "layer6"]
  np.testing.assert_array_equal(np.asarray(ws), np.asarray(ref_ws))
  for k in ref_pads:
    assert pads[k].shape == (2, 34, 34, 32)
    np.testing.assert_array_equal(np.asarray(pads[k]),
                                  np.asarray(ref_pads[k]))

  img = loaded.synthesize(ws, pads)
  ref_img = jax.jit(lambda p, w, q: functional.synthesize(
      p, w, q, config=cfg))(params["generator"], ref_ws, ref_pads)
  np.testing.assert_array_equal(np.asarray(img), np.asarray(ref_img))
  assert img.shape == (2, 32, 32, 3) and np.all(np.isfinite(img))
  assert float(jnp.std(img)) > 1e-3
  # The paddings matter: the unpadded generator gives another image.
  assert not np.allclose(np.asarray(loaded.synthesize(ws)), np.asarray(img))

  # Same shapes, new values: no retrace.
  loaded.invert(_images(2, 64, seed=1))
  loaded.synthesize(ws + 0.5, pads)
  assert loaded.trace_counts["invert"] == 1
  assert loaded.trace_counts["synthesize"] == 2  # with and without paddings
  loaded.synthesize(ws, pads)
  assert loaded.trace_counts["synthesize"] == 2


def test_mapping_jit_cache(saved, loaded):
  cfg, params, _ = saved
  z = np.random.default_rng(0).standard_normal((3, 32)).astype(np.float32)
  ws = loaded.mapping(z, psi=0.7, cutoff=4)
  ref = functional.mapping(params["generator"], jnp.asarray(z), config=cfg,
                           psi=0.7, cutoff=4)
  np.testing.assert_allclose(np.asarray(ws), np.asarray(ref), atol=1e-6)
  loaded.mapping(z, psi=0.5, cutoff=4)  # psi is traced: no retrace
  assert loaded.trace_counts["mapping"] == 1
  loaded.mapping(z[:2], psi=0.5, cutoff=4)  # new shape: one more trace
  assert loaded.trace_counts["mapping"] == 2


def test_reconstruct_equals_synthesize_of_invert(loaded):
  x = _images(2, 64, seed=2)
  rec = loaded.reconstruct(x)
  ws, pads = loaded.invert(x)
  np.testing.assert_array_equal(np.asarray(rec),
                                np.asarray(loaded.synthesize(ws, pads)))
  # It reuses the compiled encoder: one trace for this input shape, ever.
  assert loaded.trace_counts["invert"] == 1


def test_uint8_and_float_inputs_agree():
  # The encoder input is bit-identical (the codes themselves are compared in
  # test_round_trip_bit_identical), also under jit.
  x = _images(2, 64, seed=3)
  xf = x.astype(np.float32) / 255.0 * 2.0 - 1.0
  for prep in (inversion.prepare_images,
               jax.jit(inversion.prepare_images, static_argnums=1)):
    np.testing.assert_array_equal(np.asarray(prep(x, 64)), xf)
    np.testing.assert_array_equal(np.asarray(prep(xf, 64)), xf)
  # A single [H, W, 3] image is a batch of one.
  single = inversion.prepare_images(x[0], 64)
  np.testing.assert_array_equal(np.asarray(single), xf[:1])


def test_bad_images_rejected(loaded):
  x = _images(1, 64)
  cases = [
      (x[0, :, :, 0], "rank 2"),
      (x[None], "rank 5"),
      (x[..., :1], "3 \\(RGB\\) channels.*grayscale"),
      (np.transpose(x, (0, 3, 1, 2)), "channels-first"),
      (x.astype(np.int32), "dtype int32"),
      (x[:, :, :48], "square"),
      (x.astype(np.float32), "float images must be in \\[-1, 1\\]"),
  ]
  for bad, msg in cases:
    with pytest.raises(ValueError, match=msg):
      loaded.invert(bad)
  with pytest.raises(ValueError, match="must be 64 x 64"):
    inversion.prepare_images(_images(1, 32), 64, resize=None)


def test_resize_is_area_average():
  tf = pytest.importorskip("tensorflow")
  x = _images(2, 100, seed=4).astype(np.float32) / 127.5 - 1
  got = np.asarray(inversion.resize_images(x, 64))
  # TensorFlow's "area" resize: fractional pixel-area averaging.
  want = tf.image.resize(x, (64, 64), method="area").numpy()
  assert np.max(np.abs(got - want)) <= 1e-5
  # An integer factor is an exact average pool.
  y = np.asarray(inversion.resize_images(x[:, :96, :96], 48))
  pool = x[:, :96, :96].reshape(2, 48, 2, 48, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(y, pool, atol=1e-6)
  # Other sizes reach the encoder resized.
  assert inversion.prepare_images(_images(1, 100), 64).shape == (1, 64, 64, 3)


def test_generator_only_directory(tmp_path):
  cfg = _config(with_encoder=False)
  params = {"generator": _params(cfg)["generator"]}
  path = str(tmp_path / "gen_only")
  model_dir.save_model(path, cfg, params)
  m = model_dir.load(path)
  assert not m.has_encoder and "encoder" not in m.config
  ws = m.mapping(np.ones((1, 32), np.float32))
  ref = jax.jit(lambda p, w: functional.synthesize(p, w, config=cfg))(
      params["generator"], ws)
  np.testing.assert_array_equal(np.asarray(m.synthesize(ws)), np.asarray(ref))
  with pytest.raises(ValueError, match="has no encoder"):
    m.invert(_images(1, 64))
  with pytest.raises(ValueError, match="has no encoder"):
    m.reconstruct(_images(1, 64))
  # A config with an encoder but no encoder arrays is refused at save time.
  with pytest.raises(ValueError, match="disagree about the encoder"):
    model_dir.save_model(str(tmp_path / "bad"), _config(), params)


def _rewrite_arrays(path, arrays):
  shutil.rmtree(os.path.join(path, "arrays"))
  ocp.PyTreeCheckpointer().save(os.path.join(path, "arrays"), arrays)


def test_mismatched_arrays_named(saved, tmp_path):
  cfg, params, src = saved
  path = str(tmp_path / "broken")
  shutil.copytree(src, path)
  arrays = jax.tree_util.tree_map(np.asarray, params)
  del arrays["encoder"]["params"]["head3"]["linear"]["bias"]
  arrays["encoder"]["buffers"]["extra"] = np.zeros(3, np.float32)
  arrays["generator"]["params"]["synthesis"]["const"] = np.zeros(
      (4, 4, 7), np.float32)
  _rewrite_arrays(path, arrays)
  with pytest.raises(ValueError) as e:
    model_dir.load(path)
  msg = str(e.value)
  assert path in msg
  assert "encoder/params/head3/linear/bias" in msg
  assert "encoder/buffers/extra" in msg
  assert "generator/params/synthesis/const: expected (4, 4, 32)" in msg
  assert "1 missing, 1 unexpected, 1 mis-shaped" in msg
  # save_model runs the same check before writing anything.
  with pytest.raises(ValueError, match="head3/linear/bias"):
    model_dir.save_model(str(tmp_path / "never"), cfg, arrays)
  assert not os.path.exists(tmp_path / "never")


def test_bad_directories(saved, tmp_path):
  _, _, src = saved
  with pytest.raises(FileNotFoundError, match="does not exist"):
    model_dir.load(str(tmp_path / "nope"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="not a padinv_jax model directory"):
    model_dir.load(str(tmp_path / "empty"))

  path = str(tmp_path / "corrupt_json")
  shutil.copytree(src, path)
  with open(os.path.join(path, "config.json"), "w") as f:
    f.write("{not json")
  with pytest.raises(ValueError, match="config.json could not be read"):
    model_dir.load(path)

  path = str(tmp_path / "other_format")
  shutil.copytree(src, path)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump({"format": "something"}, f)
  with pytest.raises(ValueError, match="not a padinv_jax model config"):
    model_dir.load(path)

  path = str(tmp_path / "no_arrays")
  shutil.copytree(src, path)
  shutil.rmtree(os.path.join(path, "arrays"))
  with pytest.raises(ValueError, match="no arrays/ directory"):
    model_dir.load(path)

  path = str(tmp_path / "corrupt_arrays")
  shutil.copytree(src, path)
  for root, _, files in os.walk(os.path.join(path, "arrays")):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\0garbage")
  with pytest.raises(ValueError, match="could not be read.*corrupt"):
    model_dir.load(path)


def test_overwrite_refused(saved, tmp_path):
  cfg, params, _ = saved
  path = str(tmp_path / "m")
  model_dir.save_model(path, cfg, params)
  with pytest.raises(FileExistsError, match="overwrite=True"):
    model_dir.save_model(path, cfg, params)
  model_dir.save_model(path, cfg, params, overwrite=True)
  assert sorted(os.listdir(path)) == ["arrays", "config.json"]
  other = tmp_path / "photos"
  other.mkdir()
  (other / "a.png").write_bytes(b"x")
  with pytest.raises(FileExistsError, match="not a padinv_jax model"):
    model_dir.save_model(str(other), cfg, params, overwrite=True)
  assert (other / "a.png").exists()
  assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


def test_psp_mode_runs_unpadded_and_downsamples(tmp_path):
  # One compile covers both: a pSp encoder (no padding space) in front of a
  # 128 px generator, whose outputs reconstruct reduces to the 64 px input.
  cfg = _config(resolution=128, use_padding_space=False)
  params = _params(cfg, seed=5)
  path = str(tmp_path / "psp")
  model_dir.save_model(path, cfg, params)
  m = model_dir.load(path)
  assert not m.params["encoder"]["params"].keys() & {"pad_unit0", "pad_head0"}
  x = _images(1, 64, seed=6)

  def run(p, i):
    ws, pads = inversion.invert(p, i, config=cfg)
    plain = functional.synthesize(p["generator"], ws, None, config=cfg)
    recs = [inversion.reconstruct(p, i, config=cfg, downsample=d)
            for d in ("nearest", "avgpool")]
    return ws, pads, plain, recs

  ws, pads, plain, (near, pool) = jax.jit(run)(m.params, x)
  assert pads == {} and ws.shape == (1, 18, 32)
  plain, near, pool = (np.asarray(a) for a in (plain, near, pool))
  assert plain.shape == (1, 128, 128, 3) and near.shape == (1, 64, 64, 3)
  assert float(np.std(plain)) > 1e-3
  # reconstruct == the unpadded generator, reduced by pixel (2i, 2j) ...
  np.testing.assert_allclose(near, plain[:, ::2, ::2], atol=1e-5)
  # ... or by a 2 x 2 average pool.
  want = plain.reshape(1, 64, 2, 64, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(pool, want, atol=1e-5)


def test_incompatible_config_refused(saved, tmp_path):
  cfg, params, src = saved
  bad = _config(stage_channels=(8, 16, 16, 16), fpn_channels=16)
  with pytest.raises(ValueError, match="save_model: invalid model config.*"
                     "fpn_channels"):
    model_dir.save_model(str(tmp_path / "bad"), bad, params)
  path = str(tmp_path / "edited")
  shutil.copytree(src, path)
  cfg_path = os.path.join(path, "config.json")
  with open(cfg_path) as f:
    meta = json.load(f)
  meta["config"]["encoder"]["w_dim"] = 16
  with open(cfg_path, "w") as f:
    json.dump(meta, f)
  with pytest.raises(ValueError, match="config.json: invalid model config.*"
                     "w_dim"):
    model_dir.load(path)
  meta["config"]["encoder"]["colour"] = 1
  with open(cfg_path, "w") as f:
    json.dump(meta, f)
  with pytest.raises(ValueError, match="unknown encoder config field"):
    model_dir.load(path)
