"""Interpolation between two codes in W+, in the padding space, or in both."""

from __future__ import annotations

from padinv_jax.inversion.codes import (_check_same_keys, _check_space,
                                        _lerp, _repeat_steps, lerp_weights)


def interpolate(codes_a, codes_b, steps: int, *, space: str = "both"):
  """Codes on the straight line from A to B in W+, the padding space, or both.

  With space="w" the paddings stay A's; with "padding" the ws stay A's; so
  the last step is A's and B's codes mixed (a blend) unless space="both".
  The endpoints are exact copies of the inputs.

  Args:
    codes_a: (ws [N, L, D], paddings) of the start.
    codes_b: (ws, paddings) of the end, same shapes.
    steps: K >= 2 (static).
    space: "w" | "padding" | "both" (static).

  Returns:
    (ws [K, N, L, D], paddings {key: [K, N, S, S, C]}).
  """
  _check_space(space)
  (ws_a, pads_a), (ws_b, pads_b) = codes_a, codes_b
  _check_same_keys(pads_a, pads_b, "interpolate")
  if ws_a.shape != ws_b.shape:
    raise ValueError(f"interpolate: ws shapes differ: {tuple(ws_a.shape)} and "
                     f"{tuple(ws_b.shape)}")
  t = lerp_weights(steps)
  if space in ("w", "both"):
    ws = _lerp(ws_a, ws_b, t)
  else:
    ws = _repeat_steps(ws_a, len(t))
  if space in ("padding", "both"):
    pads = {k: _lerp(pads_a[k], pads_b[k], t) for k in pads_a}
  else:
    pads = {k: _repeat_steps(v, len(t)) for k, v in pads_a.items()}
  return ws, pads
