"""Write padinv_jax/assets/fashion32/CARD.md + card.json from measured JSON.

  python -m padinv_jax.training.gan_eval --generator RUN/generator \
      --classifier padinv_jax/assets/fashion_classifier --json /tmp/eval.json
  python benchmarks/precision.py --model RUN/generator --json /tmp/prec.json
  python experiments/fashion32_card.py RUN /tmp/eval.json /tmp/prec.json HOURS
"""
import json
import sys

run, eval_json, prec_json, hours = sys.argv[1:5]
ev = json.load(open(eval_json))
prec = json.load(open(prec_json))
log = [json.loads(l) for l in open(f"{run}/log.jsonl")]
last = log[-1]
steps = last["step"]; kimg = last["kimg"]
wall = float(hours)
cls = ev["class_fractions"]
hist = ", ".join(f"{k} {v:.3f}" for k, v in cls.items())
card = f"""# fashion32: a StyleGAN2 trained here on Fashion-MNIST (32 px)

FROZEN as the demo's generator: the embedded encoders (fashion32-padinv,
fashion32-psp) were trained against exactly these arrays (they borrow
them by digest), so this snapshot stays as it is (G_ema after {steps}
iterations, {kimg:.1f} kimg); a longer-trained generator would ship under
another name with its own encoders.

- Network: StyleGAN2 config-F skip generator, 32 px, z = w = 128, 8 mapping
  layers (lr_mul 0.01), channels 128 (4-16 px) / 64 (32 px)
  (channel_base 2048, channel_max 128), padding-space keys as any padinv_jax
  StyleGAN2 (pad_layer_num 4). Generator-only model directory; G_ema.
- Data: Fashion-MNIST TRAINING set (60k, Debian dataset-fashion-mnist, the
  original IDX files), each 28 x 28 image centred on a black 32 x 32 canvas,
  grey repeated to RGB. Licence: MIT (Zalando SE), ../LICENSE-fashion-mnist.txt.
  No test image was used in training.
- Command: `padinv-train-gan --config configs/gan/fashion32.py --workdir
  runs/fashion32` (resumes in the same workdir). stylegan2-ada-pytorch
  semantics: non-saturating loss, R1 gamma 1 every 16, path length weight 2
  every 4, style mixing 0.9, Adam (0, 0.99) lr 0.0025 with the lazy
  correction, batch 32, G_ema 10 kimg with ramp-up 0.05, no ADA, no mirror.
- Steps: {steps} iterations, {kimg:.1f} kimg (images seen).
- Wall time: about {wall:.1f} h on the 2-core CPU, shared with other work
  (12-28 images/s).
- Metrics (`python -m padinv_jax.training.gan_eval --generator
  padinv_jax/assets/fashion32 --classifier padinv_jax/assets/fashion_classifier`,
  10k samples, psi 1, random noise, against the 10k test images):
  domain FID {ev['fid_domain']:.2f} (floor: 10k training vs test images
  {ev['fid_domain_floor']:.2f}); mean max-softmax {ev['mean_max_softmax']:.3f};
  smallest class fraction {ev['min_class_fraction']:.3f}; class histogram:
  {hist}.
- bfloat16 synthesis vs float32 (`python benchmarks/precision.py --model
  padinv_jax/assets/fashion32`): PSNR {prec['psnr_mean_db']:.1f} dB mean,
  {prec['psnr_min_db']:.1f} dB worst of {prec['n']}.
- Sample grid: samples.png (fixed z, const noise, psi 1).
"""
open("padinv_jax/assets/fashion32/CARD.md", "w").write(card)
json.dump({"steps": steps, "kimg": kimg, "eval": ev, "precision": prec,
           "wall_hours": wall}, open("padinv_jax/assets/fashion32/card.json", "w"), indent=1)
print(card)
