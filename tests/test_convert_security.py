"""Hostile and damaged files are refused by padinv-convert with one line and no side effect.

Each hostile file would create a marker file if anything in it ran; the
tests check the exit status (2), that stderr is a single line naming the
problem, that the marker does not exist and that DST was not written.
"""

import io
import os
import pickle
import sys
import zipfile

import numpy as np
import pytest
import torch

from padinv_jax.convert import main as convert_main
from padinv_jax.convert import safe_pickle, torch_files
from padinv_jax.convert.errors import ConvertError, UnsafePickleError
from torch_ref import nvidia_persistence


class _Reduce:
  """Pickles as ``func(*args)``: what a malicious file does."""

  def __init__(self, func, args):
    self.func, self.args = func, args

  def __reduce__(self):
    return self.func, self.args


def _run_cli(tmp_path, src, capsys, *extra):
  dst = tmp_path / "out_dir"
  rc = convert_main.run([str(src), str(dst), *extra])
  captured = capsys.readouterr()
  return rc, captured.err.strip(), dst


def _assert_refused(rc, err, dst, marker, *words):
  assert rc == 2
  assert "\n" not in err and "Traceback" not in err, err
  assert err.startswith("padinv-convert: error:"), err
  for w in words:
    assert w in err, err
  assert not os.path.exists(marker), "the hostile payload ran"
  assert not os.path.exists(dst), "DST was written on failure"


@pytest.fixture
def marker(tmp_path):
  return str(tmp_path / "PWNED")


def test_reduce_os_system_refused(tmp_path, marker, capsys):
  src = tmp_path / "os_system.pkl"
  src.write_bytes(pickle.dumps(
      {"G_ema": _Reduce(os.system, (f"touch {marker}",))}, protocol=2))
  rc, err, dst = _run_cli(tmp_path, src, capsys)
  # os.system pickles as posix.system (or nt.system).
  _assert_refused(rc, err, dst, marker, "system", "refused", "os_system.pkl")


@pytest.mark.parametrize("fn", ["eval", "exec"])
def test_builtins_eval_exec_refused(tmp_path, marker, capsys, fn):
  import builtins
  code = f"open({marker!r}, 'w').close()"
  src = tmp_path / f"{fn}.pkl"
  src.write_bytes(pickle.dumps(_Reduce(getattr(builtins, fn), (code,)),
                               protocol=4))
  rc, err, dst = _run_cli(tmp_path, src, capsys)
  _assert_refused(rc, err, dst, marker, f"builtins.{fn}", "refused")


def test_getattr_gadget_refused(tmp_path, marker):
  # getattr(<anything>, 'system'): the classic way around a module allow-list.
  import builtins
  data = pickle.dumps(_Reduce(builtins.getattr, ("x", "join")), protocol=2)
  with pytest.raises(UnsafePickleError, match="getattr"):
    safe_pickle.loads(data)
  assert not os.path.exists(marker)


def _evil_module(tmp_path, marker, name):
  """A module whose import creates the marker (it must never be imported)."""
  d = tmp_path / "mods"
  d.mkdir(exist_ok=True)
  (d / f"{name}.py").write_text(
      f"open({marker!r}, 'w').close()\n"
      "def run(*a):\n"
      f"  open({marker!r}, 'w').close()\n")
  return str(d)


def _reduce_of_global(module, name, arg):
  """Protocol-2 bytes for ``module.name(arg)`` written opcode by opcode."""
  return (b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n"
          + pickle.dumps(arg, protocol=2)[2:-1]  # the pickled argument
          + b"\x85R.")  # TUPLE1, REDUCE, STOP


def test_arbitrary_module_import_refused(tmp_path, marker, capsys,
                                         monkeypatch):
  monkeypatch.syspath_prepend(_evil_module(tmp_path, marker, "evil_mod_a"))
  src = tmp_path / "import.pkl"
  src.write_bytes(_reduce_of_global("evil_mod_a", "run", "x"))
  rc, err, dst = _run_cli(tmp_path, src, capsys)
  _assert_refused(rc, err, dst, marker, "evil_mod_a.run", "allow-list")
  assert "evil_mod_a" not in sys.modules


def _torch_zip_with(data_pkl: bytes) -> bytes:
  """A valid torch zip (made by torch.save) whose data.pkl is replaced."""
  buf = io.BytesIO()
  torch.save({"w": torch.ones(2)}, buf)
  src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
  out = io.BytesIO()
  with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
    for n in src.namelist():
      z.writestr(n, data_pkl if n.endswith("data.pkl") else src.read(n))
  return out.getvalue()


def test_torch_zip_with_hostile_data_pkl_refused(tmp_path, marker, capsys,
                                                monkeypatch):
  monkeypatch.syspath_prepend(_evil_module(tmp_path, marker, "evil_mod_b"))
  src = tmp_path / "hostile.pt"
  src.write_bytes(_torch_zip_with(
      _reduce_of_global("evil_mod_b", "run", "x")))
  rc, err, dst = _run_cli(tmp_path, src, capsys)
  _assert_refused(rc, err, dst, marker, "evil_mod_b.run")
  src.write_bytes(_torch_zip_with(pickle.dumps(
      _Reduce(os.system, (f"touch {marker}",)), protocol=2)))
  rc, err, dst = _run_cli(tmp_path, src, capsys)
  _assert_refused(rc, err, dst, marker, "system")


def _recompressed(data: bytes) -> bytes:
  """The same torch zip with every member deflated."""
  src = zipfile.ZipFile(io.BytesIO(data))
  out = io.BytesIO()
  with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for n in src.namelist():
      z.writestr(n, src.read(n))
  return out.getvalue()


def test_zip_bomb_refused_before_inflating(tmp_path, capsys):
  buf = io.BytesIO()
  torch.save({"w": torch.zeros(4_000_000)}, buf)  # 16 MB that deflate ~1000x
  src = tmp_path / "bomb.pt"
  src.write_bytes(_recompressed(buf.getvalue()))
  assert os.path.getsize(src) < 200_000
  rc, err, dst = _run_cli(tmp_path, src, capsys)
  _assert_refused(rc, err, dst, tmp_path / "none", "bomb.pt", "zip bomb")
  # An honestly compressed checkpoint (random weights barely compress) loads.
  w = torch.randn(256, 256)
  buf = io.BytesIO()
  torch.save({"w": w}, buf)
  ok = tmp_path / "deflated.pt"
  ok.write_bytes(_recompressed(buf.getvalue()))
  obj, kind = torch_files.load_file(str(ok))
  assert kind == "torch-zip"
  np.testing.assert_array_equal(np.asarray(obj["w"]), w.numpy())


def test_legacy_torch_file_with_hostile_pickle_refused(tmp_path, marker):
  buf = io.BytesIO()
  torch.save({"w": torch.ones(2)}, buf, _use_new_zipfile_serialization=False)
  legacy = buf.getvalue()
  # Header pickles (magic, protocol, sys_info), then a hostile main pickle.
  f = io.BytesIO(legacy)
  for _ in range(3):
    pickle.load(f)
  head = legacy[:f.tell()]
  data = head + pickle.dumps(_Reduce(os.system, (f"touch {marker}",)), 2)
  path = tmp_path / "legacy.pt"
  path.write_bytes(data)
  with pytest.raises(UnsafePickleError, match="system"):
    torch_files.load_file(str(path))
  assert not os.path.exists(marker)


def test_truncated_and_damaged_files_refused(tmp_path, capsys):
  buf = io.BytesIO()
  torch.save({"w": torch.randn(64, 64)}, buf)
  whole = buf.getvalue()
  for name, data in [("trunc_zip.pt", whole[:len(whole) // 2]),
                     ("empty.pt", b""),
                     ("garbage.pt", b"\x80\x04not a pickle at all")]:
    src = tmp_path / name
    src.write_bytes(data)
    rc, err, dst = _run_cli(tmp_path, src, capsys)
    _assert_refused(rc, err, dst, tmp_path / "none", name)
  # A legacy file cut inside its storage bytes.
  buf = io.BytesIO()
  torch.save({"w": torch.randn(64, 64)}, buf,
             _use_new_zipfile_serialization=False)
  src = tmp_path / "trunc_legacy.pt"
  src.write_bytes(buf.getvalue()[:-100])
  rc, err, dst = _run_cli(tmp_path, src, capsys)
  _assert_refused(rc, err, dst, tmp_path / "none", "truncated")


def _nvidia_pickle_bytes(module_src: str, state: dict) -> bytes:
  """An NVIDIA persistent network, pickled as the real persistence hook does."""
  return nvidia_persistence.dumps(
      {"G_ema": nvidia_persistence.Persistent("Generator", state, module_src)})


def test_nvidia_module_src_never_runs(tmp_path, marker, capsys):
  src_code = f"open({marker!r}, 'w').close()\nclass Generator: pass\n"
  # (1) a network whose state is not a generator: refused, src not run.
  src = tmp_path / "nvidia_hostile.pkl"
  src.write_bytes(_nvidia_pickle_bytes(src_code, {"_parameters": {},
                                                  "_modules": {}}))
  rc, err, dst = _run_cli(tmp_path, src, capsys, "--format", "nvidia")
  _assert_refused(rc, err, dst, marker, "mapping.fc")
  # (2) the same file through the reader: the object is an inert stand-in.
  obj, _ = torch_files.load_file(str(src))
  assert isinstance(obj["G_ema"], safe_pickle.PersistentStandIn)
  assert not hasattr(obj["G_ema"], "module_src")
  assert not os.path.exists(marker)


def test_golden_nvidia_pickle_source_is_not_needed(golden_dir):
  # The golden pickle's module_src is a comment: loading must not need it.
  obj, kind = torch_files.load_file(
      os.path.join(golden_dir, "nvidia_g32_visible.pkl"))
  assert kind == "pickle"
  sd = safe_pickle.module_state_dict(obj["G_ema"])
  assert sd["synthesis.b4.const"].shape == (128, 4, 4)


def test_build_on_allowed_function_refused():
  # BUILD could otherwise rewrite attributes of our own rebuild functions.
  data = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n"
          + b"}q\x00X\x01\x00\x00\x00aK\x01sb.")
  with pytest.raises(UnsafePickleError, match="set the state"):
    safe_pickle.loads(data)


def test_loss_modules_become_inert_standins(tmp_path, marker, monkeypatch):
  # A training checkpoint's 'loss' holds whole nn.Modules of classes the
  # reader must not import: it records their state and keeps the weights.
  moddir = tmp_path / "lossmods"
  moddir.mkdir()
  armed = tmp_path / "ARMED"
  (moddir / "evil_loss_mod.py").write_text(
      "import os, torch\n"
      f"if os.path.exists({str(armed)!r}):\n"
      f"  open({marker!r}, 'w').close()\n"
      "class PerceptualLoss(torch.nn.Module):\n"
      "  def __init__(self):\n"
      "    super().__init__()\n"
      "    self.net = torch.nn.Conv2d(3, 4, 3)\n"
      "  def __setstate__(self, state):\n"
      f"    open({marker!r}, 'w').close()\n")
  monkeypatch.syspath_prepend(str(moddir))
  import evil_loss_mod  # pylint: disable=import-outside-toplevel
  ckpt = {"models": {"encoder": {"w": torch.randn(3, 3)}},
          "loss": {"lpips": evil_loss_mod.PerceptualLoss(),
                   "mse": torch.nn.MSELoss()}}
  path = tmp_path / "train.pth"
  torch.save(ckpt, str(path))
  del sys.modules["evil_loss_mod"]
  armed.write_text("")
  obj, kind = torch_files.load_file(str(path))
  assert kind == "torch-zip"
  assert "evil_loss_mod" not in sys.modules and not os.path.exists(marker)
  lp = obj["loss"]["lpips"]
  assert isinstance(lp, safe_pickle.StandIn)
  assert lp.qualname() == "evil_loss_mod.PerceptualLoss"
  sd = safe_pickle.module_state_dict(lp)
  np.testing.assert_array_equal(sd["net.weight"],
                                ckpt["loss"]["lpips"].net.weight.detach())
  np.testing.assert_array_equal(obj["models"]["encoder"]["w"],
                                ckpt["models"]["encoder"]["w"])
  with pytest.raises(UnsafePickleError, match="refusing to call"):
    type(lp)()


def test_reader_round_trips_torch_layouts(tmp_path):
  # Strided views, half / bfloat16 storages, shared storages, both formats.
  base = torch.randn(6, 8)
  obj = {"view": base[1:, ::2], "t": base.t(), "same": base,
         "half": torch.randn(5).half(), "bf16": torch.randn(4).bfloat16(),
         "long": torch.arange(7), "scalar": torch.tensor(3.5),
         "param": torch.nn.Parameter(torch.randn(2, 3)),
         "empty": torch.zeros(0, 3)}
  for zip_format in (True, False):
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=zip_format)
    got = torch_files.load_bytes(buf.getvalue())
    for k, v in obj.items():
      want = v.detach().float().numpy()
      np.testing.assert_array_equal(np.asarray(got[k], np.float32), want,
                                    err_msg=f"{k} zip={zip_format}")


def test_existing_dst_not_overwritten(tmp_path, golden_dir, capsys):
  dst = tmp_path / "existing"
  dst.mkdir()
  (dst / "keep.txt").write_text("mine")
  rc = convert_main.run([os.path.join(golden_dir, "nvidia_g32_visible.pkl"),
                         str(dst)])
  err = capsys.readouterr().err.strip()
  assert rc == 2 and "--overwrite" in err and "\n" not in err
  assert (dst / "keep.txt").read_text() == "mine"


def test_convert_error_is_the_public_base():
  assert issubclass(UnsafePickleError, ConvertError)


def test_harmless_run_options_are_kept_as_data():
  # Real checkpoints' options may hold paths, dates and partials: they load
  # as plain data / inert records, nothing is called.
  import collections
  import datetime
  import functools
  import pathlib
  obj = {"path": pathlib.PurePosixPath("/data/ffhq"),
         "when": datetime.datetime(2022, 7, 1, 12, 0),
         "fn": functools.partial(collections.OrderedDict, a=1)}
  got = safe_pickle.loads(pickle.dumps(obj, protocol=2))
  assert got["path"] == "/data/ffhq"
  assert got["when"] == obj["when"]
  assert isinstance(got["fn"], safe_pickle.StandIn)
  with pytest.raises(UnsafePickleError):
    type(got["fn"])()
