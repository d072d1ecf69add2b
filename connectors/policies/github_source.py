"""Policy files read from a GitHub repository through the REST API (no clone needed).

API calls (GitHub REST, ``X-GitHub-Api-Version: 2022-11-28``), all ``GET``:

* ``/repos/{owner}/{repo}/git/trees/{ref}?recursive=1`` — every file of the branch; a
  ``truncated`` tree (over 100,000 entries) is refused rather than judged in part;
* ``/repos/{owner}/{repo}/git/blobs/{sha}`` — each selected file's bytes (base64);
* ``/repos/{owner}/{repo}/commits?path=…&sha={ref}&per_page=1`` — the last commit that
  touched it (the approving commit an auditor can open).

Requests: 1 + 2 per policy file. Through the shared HTTP layer, so 429 / secondary rate
limits with ``Retry-After`` are waited out and every request has a timeout.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping, Sequence
from urllib.parse import quote

from connectors.http import HttpClient, MalformedResponseError, SourceError
from connectors.policies.documents import matches, policy_evidence
from core.records import Evidence
from core.times import full_time

API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


def _last_commit(http: HttpClient, repo: str, ref: str, rel: str) -> dict[str, str] | None:
    body = http.get_json(f"/repos/{repo}/commits", params={"path": rel, "sha": ref, "per_page": 1})
    if not isinstance(body, list):
        raise MalformedResponseError(f"commits of {rel}: expected a JSON list")
    if not body:
        return None
    c = body[0]
    committer = ((c.get("commit") or {}).get("committer") or {}) if isinstance(c, Mapping) else {}
    return {"sha": str(c.get("sha")), "committed_at": str(full_time(committer.get("date")))}


def read_github_policies(
    http: HttpClient,
    repo: str,
    ref: str,
    scope: str,
    include: Sequence[str],
    exclude: Sequence[str],
    with_commits: bool,
) -> Iterator[Evidence]:
    tree = http.get_json(f"/repos/{repo}/git/trees/{quote(ref, safe='')}", params={"recursive": 1})
    if not isinstance(tree, Mapping) or not isinstance(tree.get("tree"), list):
        raise MalformedResponseError(f"tree of {repo}@{ref}: no 'tree' list")
    if tree.get("truncated"):
        raise SourceError(
            f"the tree of {repo}@{ref} is truncated by GitHub (too many files): narrow it to a "
            "repository of policies, or use a local clone (options.path)"
        )
    files = sorted(
        (str(item["path"]), str(item["sha"]))
        for item in tree["tree"]
        if isinstance(item, Mapping) and item.get("type") == "blob" and item.get("path")
    )
    for rel, sha in files:
        if not matches(rel, include, exclude):
            continue
        blob = http.get_json(f"/repos/{repo}/git/blobs/{sha}")
        data: bytes | None = None
        error = None
        try:
            if not isinstance(blob, Mapping) or blob.get("encoding") != "base64":
                raise ValueError("not a base64 blob")
            data = base64.b64decode(str(blob.get("content") or ""), validate=False)
        except (ValueError, binascii.Error) as exc:
            error = f"blob {sha} unreadable ({exc})"
        commit = _last_commit(http, repo, ref, rel) if with_commits else None
        yield policy_evidence(scope, rel, data, error, commit)
