"""Applications over inverted codes: blending, interpolation, editing, heatmaps.

DESIGN.md section 4. The original ships no application code; the recipes here
follow the paper's figures and every choice is an argument. Everything is a
pure function of arrays and is jit-able (``config`` and the ``static``
arguments named in each docstring are read at trace time: close over them
with functools.partial). Codes files (.npz, DESIGN.md section 8) are the one
part that touches disk.

The ``padinv_jax.apps`` namespace: each application lives in its own module
(codes, blending, interpolation, editing, heatmaps); this one gathers their
public names where users import them.
"""

from padinv_jax.inversion.blending import (average_ws, blend, from_average,
                                           generator_paddings)
from padinv_jax.inversion.codes import (EDIT_SPACES, SPACES, Layers, flatten_steps,
                                        layer_mask, lerp_weights, load_codes,
                                        save_codes)
from padinv_jax.inversion.editing import (apply_direction, check_direction,
                                          edit_with_pair)
from padinv_jax.inversion.heatmaps import colorize, padding_heatmaps
from padinv_jax.inversion.interpolation import interpolate

__all__ = ["SPACES", "EDIT_SPACES", "Layers", "layer_mask", "lerp_weights",
           "flatten_steps", "save_codes", "load_codes", "blend",
           "generator_paddings", "average_ws", "from_average", "interpolate",
           "edit_with_pair", "check_direction", "apply_direction",
           "padding_heatmaps", "colorize"]
