"""geomorph-bids: GeoMorph cortical surface registration as a BIDS-App.

``geomorph_bids.register(...)`` registers one hemisphere's sphere to a template
(see :func:`geomorph_bids.engine.register.register`), ``register_many`` a cohort in
batches; they are imported on first
use so that ``import geomorph_bids`` stays light (no torch).
"""

__version__ = "0.1.0.dev0"

_LAZY = ("register", "register_many", "Registration", "RegistrationItem")
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        from .engine import register as _module

        return getattr(_module, name)
    raise AttributeError(f"module 'geomorph_bids' has no attribute {name!r}")
