"""pSp / e4e checkpoints through padinv-convert.

A tiny pSp encoder (tests/torch_ref/padinv_encoder_ref.py without the padding
space, keys renamed to pSp's encoder.body / styles / latlayer names) and a
rosinality decoder (tests/torch_ref/rosinality_ref.py) are saved as
{'state_dict', 'latent_avg', 'opts'}, converted with the real command and
compared with the references, read as pSp and as e4e.
Tolerance 1e-4 * max(1, max|ref|).
"""

import numpy as np
import pytest
import torch

from padinv_jax.storage import model_dir
from padinv_jax.convert import main as convert_main
from torch_ref import padinv_encoder_ref as enc_ref
from torch_ref import rosinality_ref
from parity import assert_close

RES, W = 32, 32
N_STYLES = 8  # 2 log2(32) - 2: codes [3, 4, 1]
ENC = dict(depth=50, stem_channels=8, stage_channels=(8, 16, 32, 32),
           fpn_channels=32, w_dim=W, codes_per_level=(3, 4, 1),
           use_padding_space=False)


def to_psp_keys(sd):
  """Official PadInv encoder keys -> pSp's GradualStyleEncoder keys."""
  counts = enc_ref.UNITS[ENC["depth"]]
  offsets = np.cumsum((0,) + counts)
  out = {}
  for k, v in sd.items():
    p = k.split(".")
    if p[0] == "backbone_stages":
      k = ".".join(["body", str(offsets[int(p[1])] + int(p[2]))] + p[3:])
    elif p[0] == "latent_heads":
      k = ".".join(["styles"] + p[1:])
    elif p[0] == "fpn":
      k = ".".join([{"0": "latlayer2", "1": "latlayer1"}[p[2]]] + p[3:])
    out["encoder." + k] = v
  return out


@pytest.fixture(scope="module")
def psp(tmp_path_factory):
  return make_psp_files(tmp_path_factory.mktemp("psp"))


def make_psp_files(d):
  """pSp / e4e / no-encoder_type checkpoints of one random net in ``d``."""
  enc = enc_ref.PadInvEncoderRef(**ENC, encoder_type="psp").eval()
  enc_ref.randomize_(enc, seed=11)
  e4e = enc_ref.PadInvEncoderRef(**ENC, encoder_type="e4e").eval()
  e4e.load_state_dict(enc.state_dict())
  g = torch.Generator().manual_seed(12)
  latent_avg = torch.randn(W, generator=g).repeat(N_STYLES, 1)
  enc.avg_latent = e4e.avg_latent = latent_avg
  dec = rosinality_ref.random_state_dict(RES, W, 2, {4: 32, 8: 32, 16: 32,
                                                     32: 32}, seed=13)
  sd = dict(to_psp_keys(enc.state_dict()))
  sd.update({"decoder." + k: v for k, v in dec.items()})

  def save(name, encoder_type):
    opts = {"output_size": RES, "n_styles": N_STYLES, "input_nc": 3,
            "start_from_latent_avg": True, "learn_in_w": False,
            "checkpoint_path": None}
    if encoder_type:
      opts["encoder_type"] = encoder_type
    path = d / name
    torch.save({"state_dict": sd, "latent_avg": latent_avg, "opts": opts},
               str(path))
    return path

  x = torch.rand(2, 3, 256, 256, generator=g) * 2 - 1
  with torch.no_grad():
    ws_psp, ws_e4e = enc(x)[0], e4e(x)[0]
  return dict(dir=d, x=x, dec=dec, ws_psp=ws_psp, ws_e4e=ws_e4e,
              psp=save("psp.pt", "GradualStyleEncoder"),
              e4e=save("e4e.pt", "Encoder4Editing"),
              unknown=save("noopts.pt", None))


def _invert(path, dst, *args):
  assert convert_main.run([str(path), str(dst), *args]) == 0
  return model_dir.load(str(dst))


def test_psp_matches_torch(psp, capsys):
  model = _invert(psp["psp"], psp["dir"] / "m_psp")
  assert "read as psp" in capsys.readouterr().out
  x = psp["x"].numpy().transpose(0, 2, 3, 1)
  ws, pads = model.invert(x)
  assert pads == {}
  assert_close(ws, psp["ws_psp"], "pSp ws")
  want = rosinality_ref.generate(psp["dec"], psp["ws_psp"])
  assert_close(model.synthesize(ws), want.numpy().transpose(0, 2, 3, 1),
               "pSp reconstruction")


def test_e4e_matches_torch_and_differs_from_psp(psp, capsys):
  model = _invert(psp["e4e"], psp["dir"] / "m_e4e")
  assert "read as e4e" in capsys.readouterr().out
  x = psp["x"].numpy().transpose(0, 2, 3, 1)
  ws, _ = model.invert(x)
  assert_close(ws, psp["ws_e4e"], "e4e ws")
  # The same weights read as pSp give other codes (only w_0 agrees).
  as_psp = _invert(psp["e4e"], psp["dir"] / "m_e4e_as_psp", "--format", "psp")
  assert "--format psp was given" in capsys.readouterr().out
  ws_psp, _ = as_psp.invert(x)
  assert_close(ws_psp, psp["ws_psp"], "e4e file read as pSp")
  np.testing.assert_allclose(ws[:, 0], ws_psp[:, 0], rtol=1e-5, atol=1e-5)
  assert np.abs(np.asarray(ws[:, 1:]) - np.asarray(ws_psp[:, 1:])).max() > 0.1


def test_missing_encoder_type_needs_format(psp, capsys):
  dst = psp["dir"] / "m_unknown"
  assert convert_main.run([str(psp["unknown"]), str(dst)]) == 2
  err = capsys.readouterr().err.strip()
  assert "--format psp or --format e4e" in err and "\n" not in err
  assert not dst.exists()
  model = _invert(psp["unknown"], dst, "--format", "e4e")
  assert model.config.encoder.encoder_type == "e4e"
