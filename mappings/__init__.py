"""Annex A catalog, documented parts and check → control mappings (TOML + strict loader)."""

from mappings.loader import (
    CATALOG_FILE,
    CONTROLS_FILE,
    THEMES,
    Control,
    DocumentedPart,
    Link,
    MappingError,
    MappingIndex,
    builtin_dir,
    control_sort_key,
    load_mappings,
    validate_mappings,
)

__all__ = [
    "CATALOG_FILE",
    "CONTROLS_FILE",
    "THEMES",
    "Control",
    "DocumentedPart",
    "Link",
    "MappingError",
    "MappingIndex",
    "builtin_dir",
    "control_sort_key",
    "load_mappings",
    "validate_mappings",
]
