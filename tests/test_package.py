"""The package namespace: public names do not hide submodules.

`padinv_jax.refine` once named both a submodule and the function exported
over it, so `from padinv_jax import refine` gave the function to code that
wanted the module; this keeps that from coming back for any name.
"""

import importlib
import pkgutil
import types

import padinv_jax


def test_every_name_in_all_resolves():
  for name in padinv_jax.__all__:
    assert hasattr(padinv_jax, name), name


def test_no_exported_name_shadows_a_submodule():
  submodules = {m.name for m in pkgutil.iter_modules(padinv_jax.__path__)}
  for name in submodules:
    importlib.import_module(f"padinv_jax.{name}")
    value = getattr(padinv_jax, name)
    assert isinstance(value, types.ModuleType), (
        f"padinv_jax.{name} is a {type(value).__name__}, which hides the "
        f"submodule padinv_jax/{name}.py")
