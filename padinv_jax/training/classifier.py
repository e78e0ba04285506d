"""Train the domain classifier (models/classifier.py) on Fashion-MNIST.

  python -m padinv_jax.training.classifier --out weights/fashion_classifier

Adam 1e-3, batch 128, random shifts of up to 2 px (the garments sit on a
32 px canvas, and GAN samples are not always centred), a fixed number of
epochs; the test-set accuracy is printed and stored in the part directory's
card (card.json beside it). A few minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from padinv_jax.data import fashion_mnist
from padinv_jax.data import images_io
from padinv_jax.models import classifier as clf
from padinv_jax.storage import part_dir


def _shift(images, rng, max_shift=2):
  n, r = images.shape[0], images.shape[1]
  out = np.zeros_like(images)
  dy, dx = rng.integers(-max_shift, max_shift + 1, (2, n))
  padded = np.pad(images, ((0, 0), (max_shift,) * 2, (max_shift,) * 2,
                           (0, 0)))
  for i in range(n):
    y, x = max_shift - dy[i], max_shift - dx[i]
    out[i] = padded[i, y:y + r, x:x + r]
  return out


def accuracy(variables, cfg, images, labels, batch=1000):
  fn = jax.jit(lambda v, x: jnp.argmax(clf.apply(v, x, config=cfg)[0], -1))
  pred = np.concatenate([np.asarray(fn(variables, images_io.to_float(
      images[i:i + batch]))) for i in range(0, len(images), batch)])
  return float(np.mean(pred == labels))


def train(epochs=4, batch=128, lr=1e-3, seed=0, data_dir=None, log=print):
  """Returns (config, variables, metrics)."""
  cfg = clf.classifier_config()
  x_train, y_train = fashion_mnist.load("train", data_dir, cfg.resolution)
  x_test, y_test = fashion_mnist.load("test", data_dir, cfg.resolution)
  model = clf.build(cfg)
  variables = clf.init_classifier(jax.random.PRNGKey(seed), cfg)
  tx = optax.adam(lr)
  opt = tx.init(variables)

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(v, o, x, y):
    def loss_fn(v):
      logits, _ = model.apply(v, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, g = jax.value_and_grad(loss_fn)(v)
    u, o = tx.update(g, o, v)
    return optax.apply_updates(v, u), o, loss

  rng = np.random.default_rng(seed)
  t0 = time.time()
  steps = len(x_train) // batch
  for epoch in range(epochs):
    order = rng.permutation(len(x_train))
    losses = []
    for s in range(steps):
      idx = order[s * batch:(s + 1) * batch]
      x = images_io.to_float(_shift(x_train[idx], rng))
      variables, opt, loss = step(variables, opt, x, y_train[idx])
      losses.append(loss)
    log(f"epoch {epoch + 1}/{epochs}: loss {float(np.mean(losses)):.4f}, "
        f"{time.time() - t0:.0f} s")
  metrics = {"test_accuracy": accuracy(variables, cfg, x_test, y_test),
             "train_accuracy_10k": accuracy(variables, cfg, x_train[:10000],
                                            y_train[:10000]),
             "epochs": epochs, "batch": batch, "lr": lr, "seed": seed,
             "wall_seconds": round(time.time() - t0, 1)}
  return cfg, jax.device_get(variables), metrics


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", required=True, help="part directory to write")
  p.add_argument("--epochs", type=int, default=4)
  p.add_argument("--data_dir", default=None,
                 help=f"Fashion-MNIST IDX folder (default "
                      f"{fashion_mnist.DEFAULT_DIR})")
  p.add_argument("--overwrite", action="store_true")
  args = p.parse_args(argv)
  if os.path.exists(args.out) and not args.overwrite:
    print(f"error: {args.out} exists; pass --overwrite", file=sys.stderr)
    return 2
  cfg, variables, metrics = train(args.epochs, data_dir=args.data_dir)
  part_dir.save_part(args.out, "classifier", cfg.to_dict(), variables,
                     overwrite=args.overwrite)
  with open(os.path.join(args.out, "card.json"), "w") as f:
    json.dump(metrics, f, indent=2)
  print(json.dumps(metrics, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
