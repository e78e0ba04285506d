"""What a GAN user asks of a generator: FID, and a domain classifier's view of samples.

``sample_uint8`` draws images as stylegan2-ada-pytorch's metrics do (G_ema,
z ~ N(0, I), psi 1, random noise, uint8 = trunc(clip(x 127.5 + 128, 0,
255))). ``classifier_report`` gives the domain FID from a classifier's
penultimate features against reference images, the class histogram and the
mean max-softmax of the samples. Arrays in, numbers out: reading datasets and
weights is the caller's business.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from padinv_jax.evaluation import fid
from padinv_jax.models import classifier as clf
from padinv_jax.models import functional


def sample_uint8(gen_vars, gen_cfg, n: int, *, seed: int = 0,
                 batch: int = 500) -> np.ndarray:
  """n samples [n, R, R, 3] uint8 with NVIDIA's metric conventions."""
  @jax.jit
  def run(key):
    k_z, k_noise = jax.random.split(key)
    z = jax.random.normal(k_z, (batch, gen_cfg.z_dim))
    ws = functional.mapping(gen_vars, z, config=gen_cfg)
    x = functional.synthesize(gen_vars, ws, config=gen_cfg,
                              noise_mode="random", rng=k_noise)
    return jnp.clip(x * 127.5 + 128, 0, 255).astype(jnp.uint8)

  key = jax.random.PRNGKey(seed)
  out = [np.asarray(run(jax.random.fold_in(key, i)))
         for i in range((n + batch - 1) // batch)]
  return np.concatenate(out)[:n]


def _to_float(x):
  return x.astype(np.float32) / 127.5 - 1.0


def classifier_outputs(clf_vars, clf_cfg, images_uint8, batch: int = 500):
  """(softmax [N, K], features [N, D]) of uint8 images."""
  fn = jax.jit(functools.partial(clf.apply, config=clf_cfg))
  probs, feats = [], []
  for i in range(0, len(images_uint8), batch):
    logits, f = fn(clf_vars, _to_float(images_uint8[i:i + batch]))
    probs.append(np.asarray(jax.nn.softmax(logits)))
    feats.append(np.asarray(f))
  return np.concatenate(probs), np.concatenate(feats)


def classifier_report(clf_vars, clf_cfg, samples_uint8, reference_uint8,
                      floor_uint8=None, class_names=None) -> dict:
  """Domain FID (samples vs reference), its floor, class histogram, confidence.

  Args:
    clf_vars, clf_cfg: the domain classifier.
    samples_uint8: generated images [N, R, R, 3].
    reference_uint8: real images the FID compares with (e.g. the test set).
    floor_uint8: other real images (e.g. as many training images): their FID
      to the reference is the floor a perfect generator would reach.
    class_names: names for the histogram.
  """
  p_s, f_s = classifier_outputs(clf_vars, clf_cfg, samples_uint8)
  _, f_r = classifier_outputs(clf_vars, clf_cfg, reference_uint8)
  ref_stats = fid.feature_stats([f_r])
  out = {"num_samples": int(len(samples_uint8)),
         "num_reference": int(len(reference_uint8)),
         "fid_domain": fid.frechet_distance(fid.feature_stats([f_s]),
                                            ref_stats)}
  if floor_uint8 is not None:
    _, f_f = classifier_outputs(clf_vars, clf_cfg, floor_uint8)
    out["fid_domain_floor"] = fid.frechet_distance(fid.feature_stats([f_f]),
                                                   ref_stats)
  k = p_s.shape[1]
  hist = np.bincount(np.argmax(p_s, 1), minlength=k) / len(p_s)
  names = list(class_names) if class_names else [str(i) for i in range(k)]
  out["class_fractions"] = {names[i]: float(hist[i]) for i in range(k)}
  out["min_class_fraction"] = float(hist.min())
  out["mean_max_softmax"] = float(np.mean(p_s.max(1)))
  return out


def inception_report(inception_vars, samples_uint8, reference_uint8,
                     floor_uint8=None, batch: int = 50) -> dict:
  """The standard FID: pytorch-fid Inception pool features (2048-d).

  Images go in as they are (a 32 px Fashion-MNIST image is resized to 299 px
  inside the network, as pytorch-fid does). Statistics as fid.feature_stats
  (divided by N, stylegan2-ada-pytorch's; pytorch-fid's np.cov divides by
  N - 1, which moves the FID by O(1/N)).
  """
  from padinv_jax.models import inception  # pylint: disable=g-import-not-at-top
  feats = lambda x: inception.batched_features(inception_vars, x, batch)
  ref_stats = fid.feature_stats([feats(reference_uint8)])
  out = {"fid_inception": fid.frechet_distance(
      fid.feature_stats([feats(samples_uint8)]), ref_stats)}
  if floor_uint8 is not None:
    out["fid_inception_floor"] = fid.frechet_distance(
        fid.feature_stats([feats(floor_uint8)]), ref_stats)
  return out
