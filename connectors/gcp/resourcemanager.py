"""The resource hierarchy through google-cloud-resource-manager: organisations, folders,
projects and their IAM policies.

Why the client library here (and plain HTTP elsewhere): the hierarchy and IAM policies
are what the whole connector is scoped by, and the library handles both gRPC (the
default in production: one connection, HTTP/2) and REST (``transport = "rest"``, for
proxies that only pass HTTP/1.1, and for tests against a local fake). Its endpoint is
configurable (``resource_manager_endpoint``; ``https://`` or loopback ``http://`` for
REST, ``host[:port]`` for gRPC).

Every library exception becomes a :class:`~connectors.http.SourceError` with the HTTP
status when there is one, so a unit catches one type of error whatever the transport.
:class:`Hierarchy` reads each folder and policy at most once per run (several hundred
projects share a handful of ancestors) and is safe to use from the worker pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, TypeVar

from connectors.http import SourceError

T = TypeVar("T")

Transport = Literal["grpc", "rest"]


def describe(exc: BaseException) -> SourceError:
    """A :class:`SourceError` for any failure of a Google client library call."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as aexc

    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, gexc.GoogleAPICallError):
        code = exc.code if isinstance(exc.code, int) else None
        message = (exc.message or type(exc).__name__).splitlines()[0][:300]
        return SourceError(f"{type(exc).__name__}: {message}" + (
            f" (HTTP {code})" if code else ""), status=code)
    if isinstance(exc, gexc.RetryError):
        cause = exc.cause
        return SourceError(f"retries exhausted: {type(cause).__name__ if cause else 'timeout'}")
    if isinstance(exc, aexc.GoogleAuthError):
        text = str(exc).splitlines()[0][:300] if str(exc) else ""
        return SourceError(f"credentials: {type(exc).__name__}: {text}")
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return SourceError(f"{type(exc).__name__}: {text}")


def _errors() -> tuple[type[BaseException], ...]:
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as aexc

    return (gexc.GoogleAPIError, aexc.GoogleAuthError, requests.RequestException,
            ConnectionError, TimeoutError)


def to_dict(message: Any) -> dict[str, Any]:
    """JSON-shaped dict (camelCase, enum names) of a proto-plus or protobuf message."""
    from google.protobuf import json_format

    pb = type(message).pb(message) if hasattr(type(message), "pb") else message
    return json_format.MessageToDict(pb)


class ResourceManager:
    """Thin wrapper of the three v3 clients with our timeouts, retries and errors."""

    def __init__(
        self,
        credentials: Any,
        *,
        transport: Transport = "grpc",
        endpoint: str | None = None,
        timeout: float = 30.0,
        retry_timeout: float = 60.0,
    ) -> None:
        from google.api_core import retry as gretry
        from google.api_core.client_options import ClientOptions
        from google.cloud import resourcemanager_v3 as rm

        opts = ClientOptions(api_endpoint=endpoint) if endpoint else None
        kwargs: dict[str, Any] = {"credentials": credentials, "transport": transport,
                                  "client_options": opts}
        self.projects = rm.ProjectsClient(**kwargs)
        self.folders = rm.FoldersClient(**kwargs)
        self.organizations = rm.OrganizationsClient(**kwargs)
        self.timeout = timeout
        # Throttling and transient server errors are retried with backoff for at most
        # ``retry_timeout`` seconds; 0 turns retries off.
        self.retry: Any = None
        if retry_timeout > 0:
            self.retry = gretry.Retry(
                predicate=gretry.if_transient_error, initial=0.5, maximum=10.0,
                multiplier=2.0, timeout=retry_timeout,
            )
        self._errors = _errors()

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, retry=self.retry, timeout=self.timeout, **kwargs)
        except self._errors as exc:
            raise describe(exc) from None

    def _each(self, pager: Callable[[], Iterable[Any]]) -> Iterator[dict[str, Any]]:
        """Items of a pager; a failure on any page is a :class:`SourceError`."""
        try:
            for item in pager():
                yield to_dict(item)
        except self._errors as exc:
            raise describe(exc) from None

    def search_organizations(self) -> list[dict[str, Any]]:
        return list(self._each(lambda: self._call(self.organizations.search_organizations)))

    def list_folders(self, parent: str) -> list[dict[str, Any]]:
        return list(self._each(lambda: self._call(self.folders.list_folders, parent=parent)))

    def search_projects(self, query: str = "state:ACTIVE") -> Iterator[dict[str, Any]]:
        return self._each(lambda: self._call(self.projects.search_projects, query=query))

    def get_project(self, project_id: str) -> dict[str, Any]:
        return to_dict(self._call(self.projects.get_project, name=f"projects/{project_id}"))

    def get_folder(self, name: str) -> dict[str, Any]:
        return to_dict(self._call(self.folders.get_folder, name=name))

    def get_iam_policy(self, resource: str) -> dict[str, Any]:
        """The IAM policy of ``projects/…``, ``folders/…`` or ``organizations/…``
        (version 3: conditional bindings are returned with their conditions)."""
        client = {"projects": self.projects, "folders": self.folders,
                  "organizations": self.organizations}[resource.split("/", 1)[0]]
        request = {"resource": resource, "options": {"requested_policy_version": 3}}
        return to_dict(self._call(client.get_iam_policy, request=request))

    def close(self) -> None:
        for client in (self.projects, self.folders, self.organizations):
            try:
                client.transport.close()
            except Exception:  # noqa: BLE001, S110 - closing is best effort
                pass


class Memo:
    """Compute-once values shared by worker threads; failures are remembered too."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._values: dict[str, Any] = {}

    def get(self, key: str, compute: Callable[[], T]) -> T:
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                try:
                    self._values[key] = (True, compute())
                except SourceError as exc:
                    self._values[key] = (False, exc)
            ok, value = self._values[key]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]


class Hierarchy:
    """Ancestors and IAM policies of hierarchy nodes, each read once per run."""

    def __init__(self, rm: ResourceManager) -> None:
        self.rm = rm
        self._parents: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self.memo = Memo()

    def learn(self, name: str, parent: str | None) -> None:
        """Record a node's parent seen in a listing (saves a ``get`` later)."""
        with self._lock:
            self._parents[name] = parent or None

    def parent_of(self, name: str) -> str | None:
        if name.startswith("organizations/"):
            return None
        with self._lock:
            if name in self._parents:
                return self._parents[name]
        if name.startswith("folders/"):
            folder = self.memo.get(f"folder:{name}", lambda: self.rm.get_folder(name))
            parent = folder.get("parent") or None
        else:
            project = self.memo.get(f"project:{name}",
                                    lambda: self.rm.get_project(name.split("/", 1)[1]))
            parent = project.get("parent") or None
        self.learn(name, parent)
        return parent

    def ancestors(self, name: str) -> list[str]:
        """Folders and organisation above ``name``, nearest first (raises SourceError
        when a folder above cannot be read)."""
        chain: list[str] = []
        node = self.parent_of(name)
        while node and node not in chain and len(chain) < 32:
            chain.append(node)
            node = self.parent_of(node)
        return chain

    def policy(self, resource: str) -> dict[str, Any]:
        return self.memo.get(f"policy:{resource}", lambda: self.rm.get_iam_policy(resource))
