"""FID statistics, the domain classifier's report, and the Fashion-MNIST IDX reader."""

import gzip
import struct

import jax
import numpy as np
import pytest
import scipy.linalg

from padinv_jax.data import fashion_mnist
from padinv_jax.evaluation import fid
from padinv_jax.evaluation import gan_metrics
from padinv_jax.models import classifier as clf
from padinv_jax.models import config as config_lib
from padinv_jax.models import functional


def test_feature_stats_are_nvidia_s():
  f = np.random.default_rng(0).standard_normal((1000, 5)) * [1, 2, 3, 4, 5]
  mu, sigma, n = fid.feature_stats([f[:300], f[300:]])
  assert n == 1000
  np.testing.assert_allclose(mu, f.mean(0), rtol=1e-12)
  # NVIDIA divides by N (not N - 1).
  np.testing.assert_allclose(sigma, np.cov(f, rowvar=False, bias=True),
                             rtol=1e-10, atol=1e-12)


def test_frechet_distance_closed_forms():
  rng = np.random.default_rng(1)
  a = rng.standard_normal((4000, 3))
  s = fid.feature_stats([a])
  assert abs(fid.frechet_distance(s, s)) < 1e-8
  shifted = (s[0] + [1.0, 2.0, 0.0], s[1], s[2])
  np.testing.assert_allclose(fid.frechet_distance(s, shifted), 5.0,
                             rtol=1e-8)
  # Diagonal covariances: Tr(Sa + Sb - 2 sqrt(Sa Sb)) = sum (sa^.5 - sb^.5)^2.
  sa, sb = np.diag([1.0, 4.0]), np.diag([9.0, 1.0])
  got = fid.frechet_distance((np.zeros(2), sa), (np.zeros(2), sb))
  np.testing.assert_allclose(got, (1 - 3) ** 2 + (2 - 1) ** 2, rtol=1e-8)
  # A general pair against an eigen-decomposition statement.
  m = rng.standard_normal((3, 3))
  sa, sb = m @ m.T + np.eye(3), np.eye(3) * 2
  w, v = np.linalg.eigh(sa)
  root_sa = v @ np.diag(np.sqrt(w)) @ v.T
  want = np.trace(sa + sb - 2 * scipy.linalg.sqrtm(root_sa @ sb @ root_sa))
  np.testing.assert_allclose(
      fid.frechet_distance((np.zeros(3), sa), (np.zeros(3), sb)), want.real,
      rtol=1e-8)


def test_classifier_report_on_a_tiny_generator():
  g_cfg = config_lib.tiny_model_config(resolution=32, with_encoder=False)
  g = functional.init_generator(jax.random.PRNGKey(0), g_cfg)
  samples = gan_metrics.sample_uint8(g, g_cfg.generator, 40, batch=16)
  assert samples.shape == (40, 32, 32, 3) and samples.dtype == np.uint8
  c_cfg = clf.classifier_config(widths=(4, 4, 8, 8, 8), feature_dim=8)
  c_vars = clf.init_classifier(jax.random.PRNGKey(1), c_cfg)
  ref = np.random.default_rng(2).integers(0, 256, (30, 32, 32, 3), np.uint8)
  rep = gan_metrics.classifier_report(c_vars, c_cfg, samples, ref, ref)
  assert abs(rep["fid_domain_floor"]) < 1e-6  # the same images: FID 0
  assert rep["fid_domain"] > 0
  assert abs(sum(rep["class_fractions"].values()) - 1) < 1e-6
  assert 0.1 <= rep["mean_max_softmax"] <= 1.0


def _idx(path, dims, data=None, magic=0x08, gz=True, extra=b""):
  n = int(np.prod(dims))
  data = np.arange(n, dtype=np.uint8).tobytes() if data is None else data
  raw = (b"\0\0" + bytes([magic, len(dims)]) + struct.pack(
      f">{len(dims)}I", *dims) + data + extra)
  if gz:
    with gzip.open(path, "wb") as f:
      f.write(raw)
  else:
    path.write_bytes(raw)
  return str(path)


def test_idx_reader_and_canvas(tmp_path):
  _idx(tmp_path / "train-images-idx3-ubyte.gz", (3, 28, 28))
  _idx(tmp_path / "train-labels-idx1-ubyte.gz", (3,),
       data=bytes([0, 9, 4]))
  images, labels = fashion_mnist.load("train", str(tmp_path))
  assert images.shape == (3, 32, 32, 3) and list(labels) == [0, 9, 4]
  raw = fashion_mnist.read_idx(str(tmp_path / "train-images-idx3-ubyte.gz"), 3)
  np.testing.assert_array_equal(images[:, 2:30, 2:30, 1], raw)
  assert images[:, :2].max() == 0 and images[:, 30:].max() == 0


@pytest.mark.parametrize("kind,match", [
    ("truncated", "truncated"), ("trailing", "trailing"),
    ("huge", "dimensions"), ("magic", "unsigned bytes"),
    ("rank", "rank"), ("notgzip", "damaged"),
])
def test_idx_reader_refuses_damaged_files(tmp_path, kind, match):
  p = tmp_path / "f.gz"
  if kind == "truncated":
    _idx(p, (10, 28, 28), data=b"\0" * 100)
  elif kind == "trailing":
    _idx(p, (1, 2, 2), extra=b"x")
  elif kind == "huge":
    _idx(p, (10 ** 9, 28, 28), data=b"")
  elif kind == "magic":
    _idx(p, (1, 2, 2), magic=0x0D)
  elif kind == "rank":
    _idx(p, (4,))
  else:
    p.write_bytes(b"not a gzip file at all")
  with pytest.raises(fashion_mnist.IdxError, match=match):
    fashion_mnist.read_idx(str(p), 3)


def test_missing_dataset_says_what_to_install(tmp_path):
  with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
    fashion_mnist.load("train", str(tmp_path))


def test_idx_files_feed_the_dataset_builder(tmp_path):
  """`python -m padinv_jax.data --train IDX`: the TFDS dataset holds the same
  32 px canvas images as the direct reader, in file order."""
  from padinv_jax.data import pipeline
  from padinv_jax.data import tfds_images
  rng = np.random.default_rng(0)
  for split, n in (("train", 5), ("t10k", 3)):
    _idx(tmp_path / f"{split}-images-idx3-ubyte.gz", (n, 28, 28),
         data=rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes())
    _idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", (n,),
         data=bytes(range(n)))
  tfds_images.main(["--name", "fmnist", "--resolution", "32", "--data_dir",
                    str(tmp_path / "tfds"), "--train",
                    str(tmp_path / "train-images-idx3-ubyte.gz"), "--test",
                    str(tmp_path / "t10k-images-idx3-ubyte.gz")])
  cfg = pipeline.default_data_config()
  cfg.dataset, cfg.data_dir, cfg.resolution = ("padinv_images/fmnist",
                                               str(tmp_path / "tfds"), 32)
  for split, ref_split in (("train", "train"), ("test", "test")):
    src = pipeline.open_source(cfg, split)
    want, _ = fashion_mnist.load(ref_split, str(tmp_path))
    got = np.stack([np.asarray(src[i]["image"]) for i in range(len(src))])
    np.testing.assert_array_equal(got, want)
