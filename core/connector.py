"""The connector plugin interface.

A connector is a class registered under the entry-point group ``annexa.connectors``
(built-ins are registered in ``pyproject.toml`` exactly as a third-party package would
register its own). The collector instantiates it with its validated options and calls
:meth:`Connector.collect`, which streams :class:`~core.records.Evidence`,
:class:`~core.records.Finding` and :class:`~core.records.Coverage`.

Contract, so that runs are honest:

* Yield a ``Coverage`` for every unit (scope/region/service) you attempted, with
  ``ok=False`` and a short reason when reading it failed. Never raise for a failed API
  call; record it and move on to the next unit.
* Checks registered for your evidence types are evaluated by the collector; yield a
  ``Finding`` yourself only for judgements that span several resources.
* Never put a secret in a payload; redact if the source returns one.
* Stop early when ``ctx.cancelled()`` turns true.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, model_validator

from core.accounts import AccountSource
from core.checks import REGISTRY, CheckRegistry, CheckSpec
from core.records import Record

ENTRY_POINT_GROUP = "annexa.connectors"


class ConnectorOptions(BaseModel):
    """Base for a connector's own options (the ``[connectors.options]`` table)."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class CollectContext:
    """What a connector may use during a run."""

    run_id: str
    log: Any = field(default_factory=structlog.get_logger)
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class Connector(ABC):
    """Base class of every connector."""

    #: The ``type`` named in config, equal to the entry-point name.
    type: ClassVar[str]
    #: The pydantic model validating ``[connectors.options]``.
    Options: ClassVar[type[ConnectorOptions]] = ConnectorOptions
    #: Prefix of every check id and resource type this connector produces.
    prefix: ClassVar[str]
    #: Where this connector's checks register (``@check`` defaults to the global one).
    check_registry: ClassVar[CheckRegistry] = REGISTRY
    #: An identity or HR source's account hook (core/accounts.py): how the identity
    #: analyzers read its stored accounts. None for every other source.
    accounts: ClassVar[AccountSource | None] = None

    def __init__(self, name: str, options: ConnectorOptions) -> None:
        self.name = name
        self.options = options

    @classmethod
    def checks(cls) -> list[CheckSpec]:
        """Every check this connector's evidence is evaluated with.

        By default the checks of :attr:`check_registry` whose id starts with
        ``prefix + "."`` — a connector's checks register when its modules are imported,
        which importing the connector class does. Override only when a connector's
        checks are not exactly those (say why in the override).
        """
        return cls.check_registry.with_prefix(cls.prefix)

    @abstractmethod
    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        """Stream records; never raise for a failure of the source."""

    def plan_units(self, ctx: CollectContext) -> list[tuple[str, str, str]] | None:
        """The units (scope, region, service) of one run, so that a daemon with
        ``[daemon] distribute = true`` can spread them over its replicas.

        Optional. None (the default): the instance is read whole, by one replica, as
        one unit. A connector that plans units must read each one in
        :meth:`collect_unit`, from its own options alone (any replica may run any
        unit, each with its own copy of the configuration; no secret travels).
        """
        return None

    def collect_unit(
        self, ctx: CollectContext, scope: str, region: str, service: str
    ) -> Iterator[Record]:
        """Stream the records of one unit returned by :meth:`plan_units`, ending with
        its ``Coverage`` (same contract as :meth:`collect`)."""
        raise NotImplementedError(f"{type(self).__name__} plans no units")


_T = TypeVar("_T")


class UnknownConnectorError(LookupError):
    pass


def registered_classes(group: str, base: type[_T]) -> dict[str, type[_T]]:
    """Every class registered under the entry-point ``group``, by entry-point name; a
    registered object that is not a subclass of ``base`` is a packaging error."""
    found: dict[str, type[_T]] = {}
    for ep in entry_points(group=group):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(
                f"entry point {ep.name!r} ({ep.value}) is not a subclass of {base.__name__}"
            )
        found[ep.name] = cls
    return found


def available_connectors() -> dict[str, type[Connector]]:
    """Every connector class registered under the entry-point group."""
    return registered_classes(ENTRY_POINT_GROUP, Connector)


def load_connector(type_name: str) -> type[Connector]:
    return class_of_type(available_connectors(), type_name)


def class_of_type(classes: Mapping[str, type[Connector]], type_name: str) -> type[Connector]:
    """``classes[type_name]``, or :class:`UnknownConnectorError` naming those installed."""
    try:
        return classes[type_name]
    except KeyError:
        known = ", ".join(sorted(classes)) or "none installed"
        raise UnknownConnectorError(
            f"unknown connector type {type_name!r} (available: {known})"
        ) from None


class SecretUnavailableError(RuntimeError):
    pass


class SecretRef(BaseModel):
    """A credential given by reference: ``{ env = "NAME" }`` or ``{ file = "/path" }``.

    The value is read only when a connector asks for it, is registered with the log
    redactor, and is never part of the config digest or any evidence.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError('give exactly one of env = "VAR" or file = "/path"')
        return self

    def get(self) -> str:
        from core.redaction import register_secret

        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise SecretUnavailableError(f"environment variable {self.env} is not set")
        else:
            assert self.file is not None
            try:
                value = Path(self.file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SecretUnavailableError(
                    f"secret file {self.file} cannot be read: {exc.strerror}"
                ) from None
        register_secret(value)
        return value

    def __repr__(self) -> str:
        return f"SecretRef(env={self.env!r})" if self.env else f"SecretRef(file={self.file!r})"
