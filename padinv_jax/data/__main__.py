"""`python -m padinv_jax.data`: prepare a TFDS dataset from images (tfds_images.main)."""

from padinv_jax.data import tfds_images

if __name__ == "__main__":
  tfds_images.main()
