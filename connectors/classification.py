"""Classification labels on data stores, shared by the cloud connectors.

ISO/IEC 27002:2022 A.5.12 asks that information be classified by its needs
(confidentiality, integrity, availability, legal requirements) and A.5.13 that it be
labelled according to that scheme, metadata labels included. On a cloud estate the
data store is where the label can be read by machines: a resource tag (AWS, Azure) or
label (Google Cloud) naming the store's classification level, with values from the
organisation's scheme. These checks say whether each store carries such a label with a
value of the scheme; whether the level is the right one stays a matter for the owner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.checks import Verdict, failed, passed


def classification_verdict(
    tags: Mapping[str, Any] | None, params: Mapping[str, Any], what: str
) -> Verdict:
    """Pass when ``tags`` carry ``tag_key`` with one of ``allowed_values``."""
    key = str(params["tag_key"]).lower()
    allowed = {str(v).lower() for v in params["allowed_values"]}
    if not key or not allowed:
        raise ValueError("tag_key and allowed_values must be set")
    found = [(k, v) for k, v in (tags or {}).items() if str(k).lower() == key]
    if not found:
        return failed(f"{what} has no {params['tag_key']} label")
    value = str(found[0][1] or "").strip()
    if value.lower() not in allowed:
        return failed(f"{what} is labelled {params['tag_key']}={value!r}, not a level of "
                      f"the scheme ({', '.join(sorted(allowed))})")
    return passed(f"{what} is classified {value}")
