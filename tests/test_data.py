"""Input pipeline: preprocessing semantics, TFDS builder, iterators, sharding."""

import io
import json
import os
import struct
import warnings
import zipfile
import zlib

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from padinv_jax.data import pipeline as data
from padinv_jax.data import preprocess


# -- independent references ----------------------------------------------------


def _overlap_weights(ssize, dsize):
  """[dsize, ssize] float64: overlap of output cell d with source pixel s.

  Output cell d covers [d * ssize / dsize, (d + 1) * ssize / dsize) of the
  source; weights are the covered length of each source pixel, normalised.
  This is the definition of area interpolation (up- and downscaling).
  """
  w = np.zeros((dsize, ssize))
  scale = ssize / dsize
  for d in range(dsize):
    a, b = d * scale, (d + 1) * scale
    for s in range(int(np.floor(a)), min(int(np.ceil(b)), ssize)):
      w[d, s] = max(0.0, min(b, s + 1) - max(a, s))
  return w / w.sum(axis=1, keepdims=True)


def _area_reference(img, out):
  """Exact float64 area interpolation (before rounding)."""
  wy = _overlap_weights(img.shape[0], out)
  wx = _overlap_weights(img.shape[1], out)
  return np.stack([wy @ img[:, :, c].astype(np.float64) @ wx.T
                   for c in range(img.shape[2])], axis=-1)


def _block_mean_reference(img, k):
  """Integer factor k: loops over k x k blocks, OpenCV's documented rounding."""
  h, w, c = img.shape
  out = np.zeros((h // k, w // k, c), np.uint8)
  for y in range(h // k):
    for x in range(w // k):
      for ch in range(c):
        s = int(img[y * k:(y + 1) * k, x * k:(x + 1) * k, ch].astype(int).sum())
        if k == 2:
          out[y, x, ch] = (s + 2) // 4  # half up
        else:
          q, r = divmod(s, k * k)  # half to even
          out[y, x, ch] = q + (1 if 2 * r > k * k or
                               (2 * r == k * k and q % 2 == 1) else 0)
  return out


def _textured(h, w, c=3, seed=0):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  base = (yy * 7 + xx * 3)[:, :, None] + rng.integers(0, 40, (h, w, c))
  return (base % 256).astype(np.uint8)


def _png16(path, rgb16):
  """Write a 16-bit RGB PNG by hand (PIL cannot write 48-bit PNGs)."""
  h, w, _ = rgb16.shape
  raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))

  def chunk(tag, body):
    return (struct.pack(">I", len(body)) + tag + body
            + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF))
  with open(path, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# -- preprocessing ---------------------------------------------------------------


@pytest.mark.parametrize("h,w", [(10, 7), (7, 10), (10, 5), (6, 6)])
def test_center_crop_offset(h, w):
  img = np.zeros((h, w, 3), np.uint8)
  img[:, :, 0] = np.arange(h)[:, None]
  img[:, :, 1] = np.arange(w)[None, :]
  out = preprocess.center_crop_square(img)
  s = min(h, w)
  assert out.shape == (s, s, 3)
  assert out[0, 0, 0] == int((h - s) * 0.5)  # the original's offset rule
  assert out[0, 0, 1] == int((w - s) * 0.5)


@pytest.mark.parametrize("size,k", [(16, 2), (24, 4), (15, 3), (20, 5)])
def test_resize_area_integer_factor_exact(size, k):
  img = _textured(size, size)
  # Tie-heavy input as well: small values, many block sums land on x.5.
  ties = np.random.default_rng(k).integers(0, 4, (size, size, 3), np.uint8)
  sums = ties.reshape(size // k, k, size // k, k, 3).astype(int).sum((1, 3))
  assert (2 * (sums % (k * k)) == k * k).sum() > 5 or k % 2
  for x in (img, ties):
    np.testing.assert_array_equal(preprocess.resize_area(x, size // k,
                                                         size // k),
                                  _block_mean_reference(x, k))


@pytest.mark.parametrize("src,dst", [(37, 16), (300, 256), (257, 256),
                                     (50, 23), (20, 47), (37, 100)])
def test_resize_area_matches_area_definition(src, dst):
  img = _textured(src, src, seed=src)
  out = preprocess.resize_area(img, dst, dst).astype(np.float64)
  ref = _area_reference(img, dst)
  diff = np.abs(out - ref)
  if src > dst:  # float32 accumulation then rounding: exact but at near-ties
    near_tie = np.abs(ref - np.floor(ref) - 0.5) < 1e-3
    wrong = out != np.rint(ref)
    assert not (wrong & ~near_tie).any(), np.argwhere(wrong & ~near_tie)[:5]
    assert diff.max() <= 0.5 + 1e-3, diff.max()
  else:  # OpenCV's 11-bit fixed point upscale truncates a little
    assert diff.max() < 1.0, diff.max()
    assert diff.mean() < 0.35, diff.mean()


def test_resize_area_matches_cv2_when_available():
  cv2 = pytest.importorskip("cv2")
  rng = np.random.default_rng(0)
  for _ in range(40):
    s, d = (int(v) for v in rng.integers(2, 160, 2))
    c = int(rng.choice([1, 3]))
    img = rng.integers(0, 256, (s, s, c), np.uint8)
    ref = cv2.resize(img, (d, d), interpolation=cv2.INTER_AREA)
    out = preprocess.resize_area(img, d, d).reshape(ref.shape)
    np.testing.assert_array_equal(out, ref, err_msg=f"{s} -> {d}, C={c}")


def test_preprocess_and_normalize_range():
  img = _textured(90, 120)
  out = preprocess.preprocess(img, 30)
  np.testing.assert_array_equal(out, _block_mean_reference(img[:, 15:105], 3))
  x = preprocess.normalize(np.array([0, 1, 128, 254, 255], np.uint8))
  assert x.dtype == np.float32
  np.testing.assert_allclose(x, np.array([0, 1, 128, 254, 255]) / 255 * 2 - 1,
                             atol=1e-7)
  assert x[0] == -1.0 and x[-1] == 1.0


# -- TFDS builder and unusable files ---------------------------------------------


def _write_messy_dir(root):
  """Good, convertible and broken files; returns (usable expected, broken)."""
  os.makedirs(root)
  rng = np.random.default_rng(1)
  expect = {}
  rgb = rng.integers(0, 256, (48, 40, 3), np.uint8)
  Image.fromarray(rgb).save(f"{root}/a_good.png")
  expect["a_good.png"] = rgb
  Image.fromarray(_textured(40, 60)).save(f"{root}/b_good.jpg", quality=95)
  expect["b_good.jpg"] = None  # lossy: only shape checked
  rgba = rng.integers(0, 256, (36, 36, 4), np.uint8)
  Image.fromarray(rgba).save(f"{root}/c_rgba.png")
  expect["c_rgba.png"] = rgba[:, :, :3]
  grey = rng.integers(0, 256, (40, 40), np.uint8)
  Image.fromarray(grey).save(f"{root}/d_grey.png")
  expect["d_grey.png"] = np.repeat(grey[:, :, None], 3, axis=2)
  g16 = rng.integers(0, 65536, (34, 34)).astype(np.uint16)
  Image.fromarray(g16).save(f"{root}/e_grey16.png")
  expect["e_grey16.png"] = np.repeat((g16 >> 8).astype(np.uint8)[:, :, None],
                                     3, axis=2)
  c16 = rng.integers(0, 65536, (38, 38, 3)).astype(np.uint16)
  _png16(f"{root}/f_rgb16.png", c16)
  expect["f_rgb16.png"] = (c16 >> 8).astype(np.uint8)
  smooth = _textured(40, 40, seed=3)
  Image.fromarray(smooth).convert("CMYK").save(f"{root}/g_cmyk.jpg",
                                                quality=98)
  expect["g_cmyk.jpg"] = smooth
  buf = io.BytesIO()
  Image.fromarray(_textured(64, 64)).save(buf, "JPEG")
  with open(f"{root}/h_truncated.jpg", "wb") as f:
    f.write(buf.getvalue()[:len(buf.getvalue()) // 2])
  open(f"{root}/i_empty.jpg", "wb").close()
  with open(f"{root}/j_text.png", "w") as f:
    f.write("this is not a png\n")
  with open(f"{root}/notes.txt", "w") as f:  # not an image name: ignored
    f.write("ignored")
  return expect, ["h_truncated.jpg", "i_empty.jpg", "j_text.png"]


def test_builder_skips_and_reports_unusable_files(tmp_path):
  src = str(tmp_path / "imgs")
  expect, broken = _write_messy_dir(src)
  data_dir = str(tmp_path / "tfds")
  with pytest.warns(UserWarning, match="skipped 3 unusable") as rec:
    builder, report = data.prepare_image_dataset(
        "messy", train=src, test=src, data_dir=data_dir, resolution=32)
  message = str(rec[0].message)
  for name in broken:
    assert os.path.join(src, name) in message
  for split in ("train", "test"):
    assert [os.path.basename(r["path"]) for r in report[split]] == broken
  with open(os.path.join(builder.data_dir, "metadata.json")) as f:
    meta = json.load(f)
  assert [os.path.basename(r["path"]) for r in meta["skipped"]["train"]
          ] == broken
  assert "0 bytes" in report["train"][1]["reason"]

  ds = builder.as_data_source("train")
  assert len(ds) == len(expect)
  for i, name in enumerate(sorted(expect)):
    ex = ds[i]
    assert os.path.basename(ex["path"].decode()) == name
    assert ex["image"].shape == (32, 32, 3) and ex["image"].dtype == np.uint8
    if name == "g_cmyk.jpg":  # CMYK round trip through JPEG: close, not exact
      want = preprocess.preprocess(expect[name], 32).astype(int)
      assert np.abs(ex["image"].astype(int) - want).mean() < 6
    elif expect[name] is not None:
      np.testing.assert_array_equal(ex["image"],
                                    preprocess.preprocess(expect[name], 32),
                                    err_msg=name)

  # The dataset feeds the iterator (reopened from files, as training does).
  cfg = data.default_data_config()
  cfg.dataset, cfg.data_dir, cfg.resolution = "padinv_images/messy", data_dir, 32
  it = data.make_train_iterator(cfg, global_batch=4, process_index=0,
                                process_count=1, seed=0)
  b = next(it)
  it.close()
  assert b["image"].shape == (4, 32, 32, 3)
  assert np.abs(b["image"]).max() <= 1.0

  # The same files in a zip: same images, paths reported as zip:member.
  zpath = str(tmp_path / "messy.zip")
  with zipfile.ZipFile(zpath, "w") as zf:
    for name in sorted(os.listdir(src)):
      zf.write(os.path.join(src, name), f"imgs/{name}")
  with pytest.warns(UserWarning, match="skipped 3"):
    zb, zreport = data.prepare_image_dataset("messyzip", train=zpath,
                                             data_dir=data_dir, resolution=32)
  assert [r["path"] for r in zreport["train"]] == [
      f"{zpath}:imgs/{n}" for n in broken]
  zds = zb.as_data_source("train")
  for i in range(len(ds)):
    np.testing.assert_array_equal(zds[i]["image"], ds[i]["image"])


def test_missing_dataset_says_how_to_prepare(tmp_path):
  cfg = data.default_data_config()
  cfg.dataset, cfg.data_dir = "padinv_images/absent", str(tmp_path)
  with pytest.raises(FileNotFoundError, match="python -m padinv_jax.data"):
    data.open_source(cfg, "train")


def test_tfds_mock_data_with_iterators():
  cfg = data.default_data_config()
  cfg.dataset = "padinv_images/ffhq"
  with tfds.testing.mock_data(num_examples=10,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    it = data.make_train_iterator(cfg, global_batch=4, process_index=0,
                                  process_count=1, seed=3)
    b1, b2 = next(it), next(it)
    it.close()
    ev = list(data.make_eval_iterator(cfg, global_batch=4, process_index=0,
                                      process_count=1))
  for b in (b1, b2):
    assert b["image"].shape == (4, 256, 256, 3)
    assert b["image"].dtype == np.float32
    assert -1.0 <= b["image"].min() and b["image"].max() <= 1.0
    assert ((0 <= b["index"]) & (b["index"] < 20)).all()  # mirrored: 2 x 10
  assert [e["mask"].sum() for e in ev] == [4, 4, 2]


# -- iterators -------------------------------------------------------------------


def _source(n=7, r=8, seed=0):
  rng = np.random.default_rng(seed)
  return data.ArraySource(rng.integers(0, 256, (n, r, r, 3), np.uint8))


def _cfg(r=8, mirror=True):
  c = data.default_data_config()
  c.dataset, c.resolution, c.mirror, c.num_workers = "demo", r, mirror, 2
  return c


def _take(it, n):
  out = [next(it) for _ in range(n)]
  it.close()
  return out


@pytest.mark.parametrize("mirror", [True, False])
def test_mirror_doubling_and_epochs(mirror):
  src = _source(n=5)
  n_virtual = 10 if mirror else 5
  it = data.make_train_iterator(_cfg(mirror=mirror), global_batch=n_virtual,
                                process_index=0, process_count=1, seed=1,
                                source=src)
  epochs = _take(it, 3)
  for b in epochs:  # every virtual index exactly once per epoch
    assert sorted(b["index"].tolist()) == list(range(n_virtual))
    for i, x in zip(b["index"], b["image"]):
      want = src.images[i % 5][:, ::-1] if i >= 5 else src.images[i]
      np.testing.assert_array_equal(x, preprocess.normalize(want))
  assert epochs[0]["index"].tolist() != epochs[1]["index"].tolist()


def test_per_process_slices_equal_global_batch():
  src, cfg = _source(n=7), _cfg()
  kw = dict(global_batch=8, seed=5, start_step=0, source=src)
  whole = _take(data.make_train_iterator(cfg, process_index=0,
                                         process_count=1, **kw), 5)
  parts = [_take(data.make_train_iterator(cfg, process_index=p,
                                          process_count=2, **kw), 5)
           for p in range(2)]
  for s in range(5):  # 40 rows cross the 14-example epoch boundary twice
    for key in ("image", "index"):
      np.testing.assert_array_equal(
          np.concatenate([parts[0][s][key], parts[1][s][key]]),
          whole[s][key])
    if s * 8 // 14 == (s * 8 + 7) // 14:  # within one epoch: no repeats
      assert not set(parts[0][s]["index"]) & set(parts[1][s]["index"])
  with pytest.raises(ValueError, match="divisible"):
    data.make_train_iterator(cfg, process_index=0, process_count=3, **kw)


def test_resume_from_step_matches_uninterrupted():
  src, cfg = _source(n=9), _cfg()
  kw = dict(global_batch=4, process_index=0, process_count=1, source=src)
  full = _take(data.make_train_iterator(cfg, seed=2, **kw), 8)
  resumed = _take(data.make_train_iterator(cfg, seed=2, start_step=5, **kw),
                  3)
  for a, b in zip(full[5:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["index"], b["index"])
  other = _take(data.make_train_iterator(cfg, seed=3, **kw), 8)
  assert any((a["index"] != b["index"]).any() for a, b in zip(full, other))


def test_eval_iterator_fixed_order_and_padding():
  src, cfg = _source(n=7), _cfg()
  whole = list(data.make_eval_iterator(cfg, global_batch=4, process_index=0,
                                       process_count=1, source=src))
  assert [b["index"].tolist() for b in whole] == [[0, 1, 2, 3], [4, 5, 6, -1]]
  assert whole[1]["mask"].tolist() == [1, 1, 1, 0]
  assert not whole[1]["image"][3].any()
  np.testing.assert_array_equal(whole[1]["image"][2],
                                preprocess.normalize(src.images[6]))
  parts = [list(data.make_eval_iterator(cfg, global_batch=4, process_index=p,
                                        process_count=2, source=src))
           for p in range(2)]
  for b, (p0, p1) in enumerate(zip(*parts)):
    for key in ("image", "index", "mask"):
      np.testing.assert_array_equal(np.concatenate([p0[key], p1[key]]),
                                    whole[b][key])


def test_prefetch_to_mesh_shards_on_data_axis():
  assert jax.device_count() == 8
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  src, cfg = _source(n=11), _cfg()
  kw = dict(global_batch=16, process_index=0, process_count=1, seed=0,
            source=src)
  host = _take(data.make_train_iterator(cfg, **kw), 4)
  it = data.make_train_iterator(cfg, **kw)
  got = []
  for b in data.prefetch_to_mesh((next(it) for _ in range(4)), mesh, size=2):
    got.append(b)
  it.close()
  assert len(got) == 4
  want_spec = jax.sharding.PartitionSpec("data")
  for h, g in zip(host, got):
    for key in ("image", "index"):
      arr = g[key]
      assert isinstance(arr, jax.Array) and arr.shape == h[key].shape
      assert arr.sharding.spec == want_spec
      assert len(arr.addressable_shards) == 8
      for shard in arr.addressable_shards:
        rows = shard.index[0]
        assert rows.stop - rows.start == 2
        np.testing.assert_array_equal(np.asarray(shard.data), h[key][rows])
      np.testing.assert_array_equal(np.asarray(arr), h[key])


# -- demo dataset ----------------------------------------------------------------


def test_demo_dataset_from_generator():
  from padinv_jax.models import config as config_lib
  from padinv_jax.data import demo_data
  from padinv_jax.models import functional
  cfg = config_lib.tiny_model_config(resolution=16, with_encoder=False)
  g = jax.jit(lambda k: functional.init_generator(k, cfg))(jax.random.PRNGKey(0))
  images, kinds = demo_data.make_demo_dataset(g, cfg, 10, seed=4,
                                              return_kinds=True)
  assert images.shape == (10, 256, 256, 3) and images.dtype == np.uint8
  assert sorted(kinds) == sorted(["plain"] * 5 + ["shift"] * 2 +
                                 ["crop"] * 2 + ["flip"])
  # Independent path: the generator's own output, nearest-upscaled 16x.
  z = jax.random.normal(jax.random.PRNGKey(4), (10, cfg.generator.z_dim))
  x = np.asarray(jax.jit(lambda g, z: functional.synthesize(
      g, functional.mapping(g, z, config=cfg), config=cfg))(g, z))
  gen = np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8)
  gen = gen.repeat(16, axis=1).repeat(16, axis=2)
  assert images.std() > 10
  for i, k in enumerate(kinds):
    if k == "plain":
      assert np.abs(images[i].astype(int) - gen[i]).max() <= 1
    elif k == "flip":
      assert np.abs(images[i].astype(int) - gen[i][::-1]).max() <= 1
    else:
      assert np.abs(images[i].astype(int) - gen[i]).mean() > 2
  it = data.make_train_iterator(_cfg(r=256), global_batch=4, process_index=0,
                                process_count=1, seed=0,
                                source=data.ArraySource(images))
  b = _take(it, 1)[0]
  assert b["image"].shape == (4, 256, 256, 3)
