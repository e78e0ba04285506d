"""ArcFace and LPIPS weight files through padinv-convert into part directories.

Random networks from the independent PyTorch references
(tests/torch_ref/{arcface_ref, lpips_ref}.py) are saved as the official files
are (a bare state dict; torchvision trunk + lpips linear layers as two files;
the legacy torch format for the old ArcFace file), converted with the real
command, read back with part_dir.load_part and compared on non-constant
inputs. Tolerance 1e-4 * max(1, max|ref|).
"""

import numpy as np
import pytest
import torch

from padinv_jax.storage import part_dir
from padinv_jax.convert import main as convert_main
from padinv_jax.losses import arcface
from padinv_jax.losses import lpips
from torch_ref import arcface_ref
from torch_ref import lpips_ref
from parity import assert_close


def _images(n, size, seed):
  g = torch.Generator().manual_seed(seed)
  return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def test_arcface_legacy_file(tmp_path, capsys):
  model = arcface_ref.make_arcface(seed=1, stem=8, widths=(8, 16, 16, 32),
                                   emb=24)
  src = tmp_path / "model_ir_se50.pth"
  # The published file predates the zip format; DataParallel prefix too.
  torch.save({"module." + k: v for k, v in model.state_dict().items()},
             str(src), _use_new_zipfile_serialization=False)
  dst = tmp_path / "arcface"
  assert convert_main.run([str(src), str(dst)]) == 0
  assert "ArcFace IR-SE-50" in capsys.readouterr().out
  variables = part_dir.load_part(str(dst), "arcface")
  x = _images(3, 256, 2)
  with torch.no_grad():
    want = model.embed(x)
  got = arcface.id_embedding(variables, x.numpy().transpose(0, 2, 3, 1))
  assert_close(got, want, "ArcFace embeddings")


@pytest.mark.parametrize("layout", ["two_files", "one_lpips_state_dict"])
def test_lpips_files(tmp_path, capsys, layout):
  model = lpips_ref.make_lpips("alex", seed=3)
  trunk, lin = lpips_ref.split_state_dict(model)
  torchvision = dict(trunk, **{"classifier.1.weight": np.ones((4, 9), np.float32)})
  if layout == "two_files":
    torch.save({k: torch.from_numpy(v) for k, v in torchvision.items()},
               str(tmp_path / "alexnet.pth"), _use_new_zipfile_serialization=False)
    torch.save({k: torch.from_numpy(v) for k, v in lin.items()},
               str(tmp_path / "alex.pth"))
    src = f"{tmp_path / 'alexnet.pth'}+{tmp_path / 'alex.pth'}"
  else:  # lpips.LPIPS().state_dict(): scaling_layer, net.slice{s}, lin{k}
    slice_of = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    whole = {"scaling_layer.shift": torch.tensor(lpips_ref.SHIFT)[None, :, None,
                                                                   None],
             "scaling_layer.scale": torch.tensor(lpips_ref.SCALE)[None, :, None,
                                                                   None]}
    for k, v in trunk.items():
      i = int(k.split(".")[1])
      whole[f"net.slice{slice_of[i]}.{i}.{k.split('.')[2]}"] = torch.from_numpy(v)
    whole.update({k: torch.from_numpy(v) for k, v in lin.items()})
    src = str(tmp_path / "lpips.pth")
    torch.save(whole, src)
  dst = tmp_path / "lpips"
  assert convert_main.run([src, str(dst)]) == 0
  assert "AlexNet" in capsys.readouterr().out
  variables = part_dir.load_part(str(dst), "lpips")
  x, y = _images(2, 64, 4), _images(2, 64, 5)
  with torch.no_grad():
    want = model(x, y)
  got = lpips.lpips_distance(variables, x.numpy().transpose(0, 2, 3, 1),
                             y.numpy().transpose(0, 2, 3, 1), "alex")
  assert_close(got, want, "LPIPS distances")


def test_lpips_trunk_alone_is_refused(tmp_path, capsys):
  trunk, _ = lpips_ref.split_state_dict(lpips_ref.make_lpips("alex", seed=6))
  src = tmp_path / "alexnet.pth"
  torch.save({k: torch.from_numpy(v) for k, v in trunk.items()}, str(src))
  assert convert_main.run([str(src), str(tmp_path / "x")]) == 2
  err = capsys.readouterr().err.strip()
  assert "TRUNK.pth+LIN.pth" in err and "\n" not in err


def test_part_dir_rejects_the_wrong_part(tmp_path):
  trunk, lin = lpips_ref.split_state_dict(lpips_ref.make_lpips("alex", seed=7))
  torch.save({k: torch.from_numpy(v) for k, v in dict(trunk, **lin).items()},
             str(tmp_path / "l.pth"))
  assert convert_main.run([str(tmp_path / "l.pth"), str(tmp_path / "d")]) == 0
  with pytest.raises(ValueError, match="not 'arcface'"):
    part_dir.load_part(str(tmp_path / "d"), "arcface")
