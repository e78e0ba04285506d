"""Writes benchmarks/device_check_ref.npz: the float32 reference outputs of
benchmarks/device_check.py, computed by the PyTorch references of the tests
(tests/torch_ref: NVIDIA StyleGAN2 with PadInv's padded convs, the official
PadInv encoder layout), on the CPU.

  python benchmarks/make_device_check_ref.py   # needs torch (the test extra)

What it stores (a tiny PadInv model, so the file stays small and the check
runs in seconds anywhere):
  * the weights, in padinv_jax's layout (converted with the repository's
    converters from the torch state dicts) and the model config;
  * z [4, z_dim] -> mapping(z) (ws, psi 1);
  * 2 images (uint8, 256 px) -> the encoder in eval mode: W+ codes and the
    padding maps (NHWC);
  * the padded synthesis G(ws, paddings) of those codes (NHWC);
  * one training step in torch: encoder in train mode (BatchNorm batch
    statistics, running statistics updated with momentum 0.1), padded
    synthesis, the 32 px output against the images average-pooled to it,
    loss = 1.0 * MSE + 0.003 * W-norm, NaN -> 0 / clamp 1e5, plain SGD
    (lr 0.01, so the new parameters are linear in the gradients): the loss
    and the new parameters and BatchNorm statistics.
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402  (puts tests/ on the path, builds both models)
import measure  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from padinv_jax.convert import padinv_keys  # noqa: E402
from padinv_jax.convert import common as conv_common  # noqa: E402
from padinv_jax.models import config as config_lib  # noqa: E402
from padinv_jax.storage import model_dir  # noqa: E402
from torch_ref import padinv_encoder_ref as enc_ref  # noqa: E402
from torch_ref import stylegan2_ref as gen_ref  # noqa: E402

OUT = os.path.join(HERE, "device_check_ref.npz")
MSE, WNORM = measure.MSE, measure.WNORM
LR, CLAMP = 0.01, 1e5


def nhwc(t):
  return t.detach().numpy().transpose(0, 2, 3, 1).astype(np.float32)


def main():
  # The tiny test network with 8 codes (one per generator layer) and two
  # padded layers: every part is exercised and the file stays small.
  cfg = config_lib.tiny_model_config(resolution=32)
  cfg.encoder.codes_per_level = (2, 2, 4)
  cfg.encoder.pad_layer_num = cfg.generator.pad_layer_num = 2
  enc, sd, variables = common.build_models(cfg, seed=3)
  g = cfg.generator
  nws = config_lib.num_ws(g)
  out = {"config_json": np.array(json.dumps(model_dir.config_to_json(cfg)))}
  for k, v in conv_common.flatten(jax_tree(variables)).items():
    out["v/" + k] = v

  z = np.random.default_rng(0).standard_normal((4, g.z_dim)).astype(np.float32)
  out["z"] = z
  out["ref/mapping"] = gen_ref.mapping(
      sd, torch.from_numpy(z), nws, lr_mul=g.mapping_lr_mul).numpy()

  size = int(cfg.encoder.input_size)
  x01 = (common.structured_images(2, size, seed=5) + 1) * 127.5
  images_u8 = np.clip(np.round(x01), 0, 255).astype(np.uint8)
  out["images_u8"] = images_u8
  x = torch.from_numpy(
      (images_u8.astype(np.float32) / 127.5 - 1).transpose(0, 3, 1, 2).copy())

  enc.eval()
  with torch.no_grad():
    ws, maps = enc(x)
    img = gen_ref.synthesis(sd, ws[:, :nws], g.resolution,
                            conv_clamp=g.conv_clamp, paddings=maps)
  out["ref/ws"] = ws.numpy()
  for k, m in maps.items():
    out["ref/pad/" + k] = nhwc(m)
  out["ref/image"] = nhwc(img)

  # One SGD training step.
  enc.train()
  opt = torch.optim.SGD(enc.parameters(), lr=LR)
  opt.zero_grad(set_to_none=True)
  ws, maps = enc(x)
  img = gen_ref.synthesis(sd, ws[:, :nws], g.resolution,
                          conv_clamp=g.conv_clamp, paddings=maps)
  target = F.avg_pool2d(x, x.shape[-1] // g.resolution)
  mse = (img - target).square().mean()
  wnorm = (ws - enc.avg_latent).flatten(1).norm(dim=1).mean()
  loss = MSE * mse + WNORM * wnorm
  loss.backward()
  common.sanitize_torch_grads(enc.parameters(), CLAMP)
  opt.step()
  out["ref/loss"] = np.float32(loss.item())
  new = padinv_keys.encoder_from_official(
      enc_ref.state_dict_numpy(enc), cfg.encoder,
      w_avg=sd["mapping.w_avg"].numpy())
  for part in ("params", "batch_stats"):
    for k, v in conv_common.flatten(new[part]).items():
      out[f"ref/step/{part}/{k}"] = np.asarray(v, np.float32)
  np.savez_compressed(OUT, **out)
  print(f"wrote {OUT} ({os.path.getsize(OUT) / 2 ** 20:.2f} MB, "
        f"{len(out)} arrays)")


def jax_tree(variables):
  import jax  # pylint: disable=import-outside-toplevel
  return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32),
                                jax.device_get(variables))


if __name__ == "__main__":
  main()
