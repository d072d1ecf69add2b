"""Annex A catalog, documented parts and check → control mappings (TOML + strict loader).

The package exports exactly the public names of :mod:`mappings.loader` (its ``__all__``).
"""

from mappings.loader import *  # noqa: F403 - re-export: loader.__all__ is the one list
from mappings.loader import __all__  # noqa: F401 - re-exported with the names it lists
