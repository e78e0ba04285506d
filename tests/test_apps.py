"""The application functions (padinv_jax.inversion.apps) on a tiny random model.

Each test checks the defining property of one operation: what it must equal
(the reconstructions, the plain generator, the unedited codes) and what it
must not touch.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from padinv_jax.inversion import apps
from padinv_jax.models import functional
from padinv_jax.inversion import core as inversion

import apps_testlib


@pytest.fixture(scope="module")
def tiny():
  cfg = apps_testlib.tiny_config()
  params = apps_testlib.random_params(cfg, seed=3)
  images = np.stack([apps_testlib.random_image(64, i) for i in range(3)])
  ws, pads = jax.jit(functools.partial(inversion.invert, config=cfg))(
      params, images)
  synth = jax.jit(functools.partial(functional.synthesize, config=cfg))
  return dict(cfg=cfg, params=params, gen=params["generator"], ws=ws,
              pads=pads, synth=synth)


def _code(t, i):
  return t["ws"][i:i + 1], {k: v[i:i + 1] for k, v in t["pads"].items()}


def _same(a, b):
  return jax.tree_util.tree_all(jax.tree_util.tree_map(
      lambda x, y: bool(np.array_equal(np.asarray(x), np.asarray(y))), a, b))


def test_codes_are_not_trivial(tiny):
  # Otherwise "equal to the reconstruction" below would prove nothing.
  ra = tiny["synth"](tiny["gen"], *_code(tiny, 0))
  rb = tiny["synth"](tiny["gen"], *_code(tiny, 1))
  assert float(jnp.max(jnp.abs(ra - rb))) > 0.05
  assert float(jnp.std(ra)) > 0.05


def test_blend_is_ws_of_details_with_paddings_of_contour(tiny):
  (ws_a, pads_a), (ws_b, pads_b) = _code(tiny, 0), _code(tiny, 1)
  out = jax.jit(functools.partial(apps.blend, config=tiny["cfg"]))(
      tiny["gen"], ws_b, pads_a)
  ref = tiny["synth"](tiny["gen"], ws_b, pads_a)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))
  # ...and is neither reconstruction nor the reverse blend.
  for other in ((ws_a, pads_a), (ws_b, pads_b), (ws_a, pads_b)):
    assert float(jnp.max(jnp.abs(out - tiny["synth"](tiny["gen"], *other)))
                 ) > 1e-3


@pytest.mark.parametrize("space", apps.SPACES)
def test_interpolate_endpoints_and_midpoint(tiny, space):
  a, b = _code(tiny, 0), _code(tiny, 1)
  ws, pads = jax.jit(functools.partial(apps.interpolate, steps=3,
                                       space=space))(a, b)
  assert ws.shape == (3,) + a[0].shape
  assert all(v.shape == (3,) + a[1][k].shape for k, v in pads.items())
  end_ws = b[0] if space in ("w", "both") else a[0]
  end_pads = b[1] if space in ("padding", "both") else a[1]
  assert _same(ws[0], a[0]) and _same({k: v[0] for k, v in pads.items()}, a[1])
  assert _same(ws[-1], end_ws)
  assert _same({k: v[-1] for k, v in pads.items()}, end_pads)
  np.testing.assert_allclose(ws[1], (a[0] + end_ws) / 2, atol=1e-6)
  for k in pads:
    np.testing.assert_allclose(pads[k][1], (a[1][k] + end_pads[k]) / 2,
                               atol=1e-5)
  if space != "both":
    return  # the images follow from the codes; one compile is enough
  # The endpoint images are the two reconstructions.
  frames = tiny["synth"](tiny["gen"], *apps.flatten_steps((ws, pads)))
  np.testing.assert_allclose(frames[0], tiny["synth"](tiny["gen"], *a)[0],
                             atol=1e-5)
  np.testing.assert_allclose(frames[-1], tiny["synth"](
      tiny["gen"], end_ws, end_pads)[0], atol=1e-5)


def test_interpolate_refuses_bad_arguments(tiny):
  a, b = _code(tiny, 0), _code(tiny, 1)
  with pytest.raises(ValueError, match="space"):
    apps.interpolate(a, b, 3, space="z")
  with pytest.raises(ValueError, match="steps"):
    apps.interpolate(a, b, 1)
  with pytest.raises(ValueError, match="same padding maps"):
    apps.interpolate(a, (b[0], {"const": b[1]["const"]}), 3)


def test_generator_paddings_are_the_plain_generator(tiny):
  cfg, gen = tiny["cfg"], tiny["gen"]
  pads = apps.generator_paddings(gen, 3, config=cfg)
  const = np.asarray(gen["params"]["synthesis"]["const"])
  p0 = np.array(pads["const"])
  np.testing.assert_array_equal(p0[1, 15:19, 15:19], const)
  p0[:, 15:19, 15:19] = 0
  assert not p0.any()
  assert all(not np.asarray(v).any() for k, v in pads.items() if k != "const")
  ws = tiny["ws"]
  np.testing.assert_allclose(tiny["synth"](gen, ws, pads),
                             tiny["synth"](gen, ws, None), atol=1e-5)


def test_from_average_starts_at_plain_generator_ends_at_paddings(tiny):
  cfg, gen = tiny["cfg"], tiny["gen"]
  _, pads = _code(tiny, 2)
  ws, seq = jax.jit(functools.partial(apps.from_average, steps=3, config=cfg,
                                      num_codes=18))(gen, pads)
  w_avg = np.asarray(gen["buffers"]["mapping"]["w_avg"])
  assert ws.shape == (3, 1, 18, w_avg.shape[0])
  np.testing.assert_array_equal(np.asarray(ws), np.broadcast_to(w_avg,
                                                                ws.shape))
  assert _same({k: v[-1] for k, v in seq.items()}, pads)
  frames = tiny["synth"](gen, *apps.flatten_steps((ws, seq)))
  plain = tiny["synth"](gen, jnp.broadcast_to(w_avg, (3, 8, w_avg.shape[0])),
                        None)
  np.testing.assert_allclose(frames[0], plain[0], atol=1e-5)
  assert float(jnp.max(jnp.abs(frames[-1] - plain[0]))) > 1e-3


@pytest.mark.parametrize("space", apps.EDIT_SPACES)
def test_edit_with_pair(tiny, space):
  a, a2, b = _code(tiny, 0), _code(tiny, 1), (tiny["ws"], tiny["pads"])
  edit = jax.jit(functools.partial(apps.edit_with_pair, space=space))
  # alpha = 0 is the reconstruction's codes, bit for bit.
  assert _same(edit(a, a2, b, 0.0), b)
  # Editing A itself with alpha 1 lands on A' in the edited space.
  ws, pads = edit(a, a2, a, 1.0)
  want_ws = a2[0] if space != "padding" else a[0]
  want_pads = a2[1] if space != "w" else a[1]
  np.testing.assert_allclose(ws, want_ws, atol=1e-5)
  assert _same(ws, a[0]) == (space == "padding")
  for k in pads:
    np.testing.assert_allclose(pads[k], want_pads[k], atol=1e-5)
    assert _same(pads[k], a[1][k]) == (space == "w")


def test_edit_with_pair_layers_and_keys(tiny):
  a, a2, b = _code(tiny, 0), _code(tiny, 1), (tiny["ws"], tiny["pads"])
  ws, _ = apps.edit_with_pair(a, a2, b, 1.0, space="w", layers=slice(2, 5))
  changed = np.any(np.asarray(ws) != np.asarray(b[0]), axis=(0, 2))
  np.testing.assert_array_equal(np.nonzero(changed)[0], [2, 3, 4])
  _, pads = apps.edit_with_pair(a, a2, b, 1.0, space="padding",
                                padding_keys=["layer2"])
  assert [k for k in pads if not _same(pads[k], b[1][k])] == ["layer2"]
  with pytest.raises(ValueError, match="unknown padding keys"):
    apps.edit_with_pair(a, a2, b, 1.0, padding_keys=["layer9"])
  with pytest.raises(ValueError, match="layers"):
    apps.layer_mask(18, [18])
  # A selection for the space that is not edited is refused, not ignored.
  with pytest.raises(ValueError, match="selects W\\+ codes"):
    apps.edit_with_pair(a, a2, b, 1.0, space="padding", layers=slice(0, 2))
  with pytest.raises(ValueError, match="selects padding maps"):
    apps.edit_with_pair(a, a2, b, 1.0, space="w", padding_keys=["const"])
  ws, pads = apps.edit_with_pair(a, a2, b, 1.0, space="both",
                                 layers=slice(0, 1), padding_keys=["const"])
  changed = np.any(np.asarray(ws) != np.asarray(b[0]), axis=(0, 2))
  np.testing.assert_array_equal(np.nonzero(changed)[0], [0])
  assert [k for k in pads if not _same(pads[k], b[1][k])] == ["const"]


def test_apply_direction(tiny):
  ws = tiny["ws"]
  num, d = ws.shape[1], ws.shape[2]
  f = jax.jit(apps.apply_direction)
  # A zero direction (any accepted shape) changes nothing, bit for bit.
  for shape in ((d,), (1, d), (num + 3, d)):
    assert _same(f(ws, np.zeros(shape, np.float32), 2.0), ws)
  v = np.random.RandomState(0).randn(d).astype(np.float32)
  out = np.asarray(f(ws, v, 1.5))
  np.testing.assert_allclose(out, np.asarray(ws) + 1.5 * v, atol=1e-5)
  np.testing.assert_array_equal(out, np.asarray(f(ws, v[None], 1.5)))
  # Per-code rows: row i moves code i; rows past the codes are ignored.
  rows = np.random.RandomState(1).randn(num + 2, d).astype(np.float32)
  np.testing.assert_allclose(f(ws, rows, 1.0), np.asarray(ws) + rows[:num],
                             atol=1e-5)
  part = np.asarray(apps.apply_direction(ws, v, 1.0, layers=slice(0, 4)))
  assert _same(part[:, 4:], ws[:, 4:])
  assert not np.array_equal(part[:, :4], np.asarray(ws[:, :4]))


@pytest.mark.parametrize("shape", [(31,), (1, 33), (3, 32), (2, 2, 32)])
def test_check_direction_rejects_wrong_sizes(shape):
  with pytest.raises(ValueError, match=r"expected \[32\], \[1, 32\]"):
    apps.check_direction(np.zeros(shape), w_dim=32, num_ws=8)


def test_check_direction_accepts_the_published_shapes():
  for shape in ((32,), (1, 32), (8, 32), (18, 32)):
    assert apps.check_direction(np.ones(shape), 32, 8).shape[1] == 32


def test_padding_heatmaps_against_numpy_pca():
  rng = np.random.RandomState(0)
  s, c = 10, 6
  yy, xx = np.mgrid[0:s, 0:s] / s
  pattern = np.sin(4 * xx) + yy ** 2
  loading = rng.randn(c)
  m = pattern[..., None] * loading + 0.01 * rng.randn(s, s, c)
  pads = {"const": np.stack([m, rng.randn(s, s, c)]).astype(np.float32)}
  out = jax.jit(functools.partial(apps.padding_heatmaps, num_components=2))(
      pads)["const"]
  np.testing.assert_allclose(out["mean"], pads["const"].mean(-1), atol=1e-6)
  assert out["pca"].shape == (2, s, s, 2)
  for i in range(2):
    x = pads["const"][i].reshape(-1, c).astype(np.float64)
    x -= x.mean(0)
    evals, evecs = np.linalg.eigh(x.T @ x)
    for k in range(2):
      ref = (x @ evecs[:, -1 - k]).reshape(s, s)
      got = np.asarray(out["pca"][i, :, :, k], np.float64)
      np.testing.assert_allclose(np.abs(got), np.abs(ref), atol=1e-4)
  # The first component of the structured map is the spatial pattern.
  corr = np.corrcoef(np.asarray(out["pca"][0, :, :, 0]).ravel(),
                     pattern.ravel())[0, 1]
  assert abs(corr) > 0.999
  rgb = apps.colorize(out["mean"][0])
  assert rgb.shape == (s, s, 3) and rgb.dtype == np.uint8


def test_codes_npz_round_trip_bit_identical(tiny, tmp_path):
  ws, pads = tiny["ws"], tiny["pads"]
  path = str(tmp_path / "codes.npz")
  apps.save_codes(path, ws, pads, num_ws=8, pad_layer_num=4)
  with np.load(path) as z:
    assert sorted(z.files) == sorted(
        ["ws", "num_ws", "pad_layer_num"] + [f"pad_{k}" for k in pads])
  ws2, pads2, meta = apps.load_codes(path)
  assert meta == {"num_ws": 8, "pad_layer_num": 4}
  assert ws2.dtype == np.float32
  assert _same((ws2, pads2), (ws, pads))
  # An encoder without the padding space: no maps, P = 0.
  apps.save_codes(path, ws, {}, num_ws=8)
  assert apps.load_codes(path)[1:] == ({}, {"num_ws": 8, "pad_layer_num": 0})


def test_load_codes_refuses_other_files(tmp_path):
  np.savez(tmp_path / "x.npz", a=np.zeros(3))
  with pytest.raises(ValueError, match="not a padinv codes file"):
    apps.load_codes(str(tmp_path / "x.npz"))
  (tmp_path / "y.npz").write_bytes(b"not a zip")
  with pytest.raises(ValueError, match="not a readable"):
    apps.load_codes(str(tmp_path / "y.npz"))
  with pytest.raises(FileNotFoundError):
    apps.load_codes(str(tmp_path / "missing.npz"))
