"""Forged audit packages: a package's files taken apart, edited and zipped again, with a
manifest made to agree as a forger who knows the format would make it."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path


def unzip(src: Path) -> dict[str, bytes]:
    """Every file of the package ``src`` by its name in the archive."""
    with zipfile.ZipFile(src) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def rezip(files: dict[str, bytes], dst: Path, *, rehash: bool = True) -> None:
    """Write ``files`` as the package ``dst``; with ``rehash`` the manifest first gets
    each file's size and SHA-256 and its own digest anew, so that only what lies beyond
    the manifest (run digests, finding hashes, signatures) can give the forgery away."""
    from exports.package import manifest_digest

    if rehash:
        manifest = json.loads(files["manifest.json"])
        for f in manifest["files"]:
            f["sha256"] = hashlib.sha256(files[f["path"]]).hexdigest()
            f["size"] = len(files[f["path"]])
        manifest["manifest_digest"] = manifest_digest(manifest)
        files["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(dst, "w") as zf:
        for name, body in files.items():
            zf.writestr(name, body)
