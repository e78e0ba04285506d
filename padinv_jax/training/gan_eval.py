"""Evaluate a generator on Fashion-MNIST: domain FID, its floor, classes, confidence.

  python -m padinv_jax.training.gan_eval --generator runs/fashion32/generator \
      --classifier weights/fashion_classifier [--num 10000] [--json out.json] \
      [--inception weights/inception [--inception-num 10000]]

With --inception (pytorch-fid's FID Inception converted by padinv-convert,
see README) the standard Inception FID and its floor are added, on the first
--inception-num images of each set (Inception at 299 px is slow on a CPU:
about a minute per 1000 images on 2 cores).

Samples: 10k from the model directory's generator (G_ema), psi 1, random
noise. Reference: the 10k test images; floor: 10k training images against
the same reference.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from padinv_jax.data import fashion_mnist
from padinv_jax.evaluation import gan_metrics
from padinv_jax.models import classifier as clf
from padinv_jax.storage import model_dir
from padinv_jax.storage import part_dir


def load_classifier(path: str):
  """(variables, config) of a classifier part directory (or embedded name)."""
  from padinv_jax.storage import assets  # pylint: disable=g-import-not-at-top
  path = assets.resolve(path) or path
  cfg_json = part_dir.read_config(path)["config"]
  c_cfg = clf.classifier_config(**{k: tuple(v) if isinstance(v, list) else v
                                   for k, v in cfg_json.items()})
  return part_dir.load_part(path, "classifier"), c_cfg


def evaluate(generator: str, classifier: str, num: int = 10000, seed: int = 0,
             data_dir=None, inception: str = None,
             inception_num: int = 10000) -> dict:
  model = model_dir.load(generator)
  c_vars, c_cfg = load_classifier(classifier)
  r = int(model.config.generator.resolution)
  test, _ = fashion_mnist.load("test", data_dir, r)
  train, _ = fashion_mnist.load("train", data_dir, r)
  floor = train[np.random.default_rng(seed).permutation(len(train))[:num]]
  samples = gan_metrics.sample_uint8(model.params["generator"],
                                     model.config.generator, num, seed=seed)
  out = gan_metrics.classifier_report(c_vars, c_cfg, samples, test[:num],
                                      floor, fashion_mnist.CLASSES)
  if inception:
    inc_vars = part_dir.load_part(inception, "inception")
    k = min(inception_num, num)
    out.update(gan_metrics.inception_report(inc_vars, samples[:k], test[:k],
                                            floor[:k]))
    out["num_inception"] = int(k)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--generator", required=True)
  p.add_argument("--classifier", required=True)
  p.add_argument("--num", type=int, default=10000)
  p.add_argument("--json", default=None)
  p.add_argument("--inception", default=None,
                 help="FID Inception part directory (padinv-convert "
                      "pt_inception-2015-12-05-6726825d.pth DIR)")
  p.add_argument("--inception-num", type=int, default=10000)
  args = p.parse_args(argv)
  out = evaluate(args.generator, args.classifier, args.num,
                 inception=args.inception, inception_num=args.inception_num)
  text = json.dumps(out, indent=2)
  print(text)
  if args.json:
    with open(args.json, "w") as f:
      f.write(text + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
