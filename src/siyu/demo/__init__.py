"""The demo brand: a seeded, deterministic generator of a realistic brand, and its database loader.

`generate_world` is pure (numpy and dataclasses); `load_world` writes a world into siyu's database.
"""

from siyu.demo.records import World
from siyu.demo.world import BGNBD, DEFAULT_END, GammaGamma, generate_world

__all__ = ["BGNBD", "DEFAULT_END", "GammaGamma", "World", "generate_world"]
