"""Annex A catalog and check → control mappings (declarative TOML + strict loader)."""

from mappings.loader import (
    CATALOG_FILE,
    THEMES,
    Control,
    Link,
    ManualControl,
    MappingError,
    MappingIndex,
    builtin_dir,
    control_sort_key,
    load_mappings,
    validate_mappings,
)

__all__ = [
    "CATALOG_FILE",
    "THEMES",
    "Control",
    "Link",
    "ManualControl",
    "MappingError",
    "MappingIndex",
    "builtin_dir",
    "control_sort_key",
    "load_mappings",
    "validate_mappings",
]
