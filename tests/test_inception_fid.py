"""The FID Inception: converter, parity with an independent torch statement
of pytorch-fid's network, refusals, and the Inception FID report."""

import numpy as np
import pytest
import torch

from padinv_jax.convert import main as convert_main
from padinv_jax.evaluation import gan_metrics
from padinv_jax.models import inception
from padinv_jax.storage import part_dir
from torch_ref import inception_ref


def fid_state_dict(seed=0, fc=1008):
  """Random weights under pytorch-fid's key names, BN stats not trivial."""
  g = torch.Generator().manual_seed(seed)
  sd = {}
  for name, cin, cout, kh, kw in inception.conv_table():
    fan_in = cin * kh * kw
    sd[f"{name}.conv.weight"] = torch.randn(cout, cin, kh, kw, generator=g) * (
        2.0 / fan_in) ** 0.5
    sd[f"{name}.bn.weight"] = 1 + 0.1 * torch.randn(cout, generator=g)
    sd[f"{name}.bn.bias"] = 0.1 * torch.randn(cout, generator=g)
    sd[f"{name}.bn.running_mean"] = 0.1 * torch.randn(cout, generator=g)
    sd[f"{name}.bn.running_var"] = 1 + 0.2 * torch.rand(cout, generator=g)
    sd[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
  sd["fc.weight"] = torch.randn(fc, 2048, generator=g) * 0.01
  sd["fc.bias"] = torch.zeros(fc)
  return sd


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  root = tmp_path_factory.mktemp("inception")
  sd = fid_state_dict()
  src = root / "pt_inception-2015-12-05-6726825d.pth"
  torch.save(sd, str(src))
  dst = root / "inception"
  assert convert_main.run([str(src), str(dst)]) == 0
  return sd, part_dir.load_part(str(dst), "inception")


@pytest.mark.parametrize("size", [32, 64])
def test_features_match_torch(converted, size):
  sd, variables = converted
  x01 = np.random.default_rng(size).uniform(0, 1, (2, size, size, 3))
  x01 = x01.astype(np.float32)
  with torch.no_grad():
    want = inception_ref.features(
        {k: v.double() for k, v in sd.items() if v.is_floating_point()},
        torch.from_numpy(x01).permute(0, 3, 1, 2).double()).numpy()
  got = np.asarray(inception.features(variables, x01 * 2 - 1))
  assert got.shape == (2, inception.FEATURES)
  rel = np.max(np.abs(got - want)) / np.max(np.abs(want))
  assert rel <= 1e-5, rel


def test_resize_is_torch_bilinear_without_antialias():
  x = np.random.default_rng(0).uniform(-1, 1, (1, 400, 37, 2))
  x = x.astype(np.float32)
  want = torch.nn.functional.interpolate(
      torch.from_numpy(x).permute(0, 3, 1, 2).double(), size=(299, 299),
      mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
  np.testing.assert_allclose(np.asarray(inception.resize_299(x)), want,
                             atol=1e-5)


@pytest.mark.parametrize("edit,match", [
    (lambda sd: sd.update({"fc.weight": torch.zeros(1000, 2048),
                           "AuxLogits.fc.weight": torch.zeros(1000, 768)}),
     "torchvision's ImageNet"),
    (lambda sd: sd.pop("Mixed_6c.branch7x7_2.bn.running_var"),
     "missing Mixed_6c.branch7x7_2.bn.running_var"),
    (lambda sd: sd.update({"Mixed_5b.branch1x1.conv.weight":
                           torch.zeros(64, 192, 3, 3)}),
     "Mixed_5b.branch1x1.conv.weight: expected"),
    (lambda sd: sd.update({"Mixed_8a.conv.weight": torch.zeros(1)}),
     "unexpected Mixed_8a.conv.weight"),
])
def test_wrong_inception_files_are_refused(tmp_path, capsys, edit, match):
  sd = fid_state_dict(1)
  edit(sd)
  src = tmp_path / "inception.pth"
  torch.save(sd, str(src))
  assert convert_main.run([str(src), str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err
  assert match in err and len(err.strip().splitlines()) == 1, err
  assert not (tmp_path / "out").exists()


def test_inception_fid_report(converted):
  _, variables = converted
  rng = np.random.default_rng(0)
  a = rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
  b = np.clip(a.astype(int) + 60, 0, 255).astype(np.uint8)
  rep = gan_metrics.inception_report(variables, b, a, a, batch=6)
  # The same images: 0 up to sqrtm's accuracy on a rank-5 2048 x 2048
  # covariance; shifted images are far.
  assert abs(rep["fid_inception_floor"]) < 0.05 * rep["fid_inception"], rep
