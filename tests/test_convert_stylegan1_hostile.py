"""Damaged and hostile StyleGAN1 files are refused as StyleGAN2 files are:
one line, exit 2, nothing written, the embedded build source never run."""

import pytest
import torch

from padinv_jax.convert import main as convert_main
from test_convert_stylegan1 import MLP, RES, W, Z, hammer_state_dict, sg1_pickle
from torch_ref import stylegan1_ref as ref


def _sd(seed=0):
  return ref.state_dict(RES, Z, W, MLP, channel_base=512, channel_max=32,
                        seed=seed)


def _refused(tmp_path, capsys, src, *words):
  dst = tmp_path / "model"
  assert convert_main.run([str(src), str(dst)]) == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1, err
  for w in words:
    assert w in err, err
  assert not dst.exists()
  assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("edit,words", [
    # static_kwargs that disagree with the weights (a 1-gigapixel claim).
    (lambda kw, sd: kw.update(resolution=2 ** 15), ["resolution 32768"]),
    # Options the importer does not implement are named, not ignored.
    (lambda kw, sd: kw.update(use_instance_norm=False),
     ["use_instance_norm"]),
    (lambda kw, sd: kw.update(num_channels=1), ["num_channels"]),
    # A NaN learning-rate multiplier from the pickle.
    (lambda kw, sd: kw.update(mapping_lrmul=float("nan")), ["lr_mul"]),
    # A mis-shaped weight.
    (lambda kw, sd: sd.update({"synthesis/8x8/Conv0_up/weight":
                               torch.zeros(3, 3, 5, 32)}),
     ["8x8/Conv0_up/weight"]),
])
def test_damaged_tf_stylegan1_pickles_are_refused(tmp_path, capsys, edit,
                                                  words):
  sd = _sd()
  kw_edits = {}
  edit(kw_edits, sd)
  src = tmp_path / "bad.pkl"
  src.write_bytes(sg1_pickle(sd, tmp_path / "PWNED", static_extra=kw_edits))
  _refused(tmp_path, capsys, src, *words)


def test_tf_stylegan1_truncated_pickle_is_refused(tmp_path, capsys):
  data = sg1_pickle(_sd(), tmp_path / "PWNED")
  src = tmp_path / "cut.pkl"
  src.write_bytes(data[:len(data) // 2])
  _refused(tmp_path, capsys, src)


def test_hammer_stylegan1_with_an_expanded_tensor_is_refused(tmp_path,
                                                            capsys):
  h = hammer_state_dict(_sd(1))
  # One value viewed as a 4000 x 4000 tensor: 64 MB if materialised.
  h["synthesis.layer1.weight"] = torch.zeros(1).expand(4000, 4000)
  src = tmp_path / "stylegan_hostile.pth"
  torch.save({"models": {"generator": h}}, str(src))
  _refused(tmp_path, capsys, src, "expanded")


def test_hammer_stylegan1_with_a_wrong_blur_filter_is_refused(tmp_path,
                                                             capsys):
  h = hammer_state_dict(_sd(2))
  key = next(k for k in h if k.endswith(".filter"))
  h[key] = torch.ones(1, 1, 3, 3) / 9  # a box blur is not StyleGAN1's [1, 2, 1]
  src = tmp_path / "stylegan_box.pth"
  torch.save({"models": {"generator": h}}, str(src))
  _refused(tmp_path, capsys, src, key.split(".")[1])


def test_hammer_stylegan1_non_finite_weights_are_refused(tmp_path, capsys):
  h = hammer_state_dict(_sd(3))
  h["synthesis.layer2.weight"] = h["synthesis.layer2.weight"].clone()
  h["synthesis.layer2.weight"][0, 0, 0, 0] = float("inf")
  src = tmp_path / "stylegan_inf.pth"
  torch.save({"models": {"generator": h}}, str(src))
  dst = tmp_path / "model"
  code = convert_main.run([str(src), str(dst)])
  err = capsys.readouterr().err
  if code == 0:
    pytest.fail("a generator with an infinite weight was converted: " + err)
  assert code == 2 and len(err.strip().splitlines()) == 1, err
  assert not dst.exists()
