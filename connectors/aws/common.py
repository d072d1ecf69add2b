"""What is AWS-specific in reading a service: botocore error classification and
description (:data:`AWS_SOURCE`, the kit's :class:`~connectors.kit.SourceErrors` for
AWS units), partial reads by error code, and never-truncated pagination. The unit
machinery, ``require`` and ``EvidenceMissing`` are the kit's (:mod:`connectors.kit`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import botocore.session
import jmespath
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.parsers import ResponseParserError

from connectors.kit import SourceErrors

#: What a failed AWS call can raise. Anything else is a bug and is reported as such.
AWS_ERRORS: tuple[type[Exception], ...] = (BotoCoreError, ClientError, ResponseParserError)

class OperationNotOffered(ClientError):
    """The endpoint answered an operation it does not implement.

    Recognised from the answer itself: HTTP 500/501 whose body is no AWS error
    document (botocore then uses the status as the error code), or an explicit
    "unknown operation" code. AWS's own transient faults are error documents
    (``InternalError``, ``ServiceUnavailable``…) and gateways answer 502-504, so both
    are still retried; this answer is not, since asking again cannot change it.
    """


#: Error codes by which endpoints say they do not know an operation.
NOT_OFFERED_CODES = frozenset({
    "NotImplemented", "UnknownOperationException", "UnknownOperation", "InvalidAction",
})


def not_offered(status: int | None, code: str | None) -> bool:
    """Whether (HTTP status, AWS error code) says the operation is not offered."""
    if code in NOT_OFFERED_CODES:
        return True
    # No error document: botocore falls back to the status as the code.
    return status in (404, 500, 501) and code == str(status)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ``ClientError`` (``AccessDenied``…), else None."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "") or None
    return None


def describe_error(exc: BaseException) -> str:
    """A short reason for a failed call, safe to store: no messages, URLs or secrets.

    AWS error messages can name principals and resources; the code and the operation
    are what an operator needs to fix permissions or connectivity.
    """
    if isinstance(exc, ClientError):
        code = error_code(exc) or "UnknownError"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        where = f"{exc.operation_name}: " if exc.operation_name else ""
        if isinstance(exc, OperationNotOffered) or not_offered(status, code):
            code = "not offered by the endpoint"
        return f"{where}{code}" + (f" (HTTP {status})" if status else "")
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found"
    if isinstance(exc, ReadTimeoutError):
        return "ReadTimeout: the endpoint did not answer in time"
    if isinstance(exc, BotoConnectionError):
        # EndpointConnectionError, ConnectTimeoutError, ProxyConnectionError…
        return f"{type(exc).__name__}: endpoint unreachable"
    if isinstance(exc, ResponseParserError):
        return "ResponseParserError: the endpoint's answer could not be parsed"
    if isinstance(exc, IncompleteListing):
        return str(exc)
    return type(exc).__name__


#: AWS units: botocore's errors are failures of the source, described by code only.
AWS_SOURCE = SourceErrors(AWS_ERRORS, describe_error)


#: Returned by :func:`read_partial` when the value could not be read.
MISSING: Any = object()


def read_partial(
    errors: dict[str, str], key: str, call: Callable[[], Any], *, absent: tuple[str, ...] = ()
) -> Any:
    """``call()`` for one part of a resource.

    An AWS error code listed in ``absent`` is a real answer ("not configured") and
    gives None. Any other API error is recorded as ``errors[key] = <code>`` and gives
    :data:`MISSING`, so the resource is still reported and only the checks needing
    ``key`` become errors. Connection errors and timeouts propagate: they fail the unit.
    """
    try:
        return call()
    except ClientError as exc:
        code = error_code(exc) or "UnknownError"
        if code in absent:
            return None
        errors[key] = code
    except ResponseParserError:
        errors[key] = "ResponseParserError"
    return MISSING


class IncompleteListing(BotoCoreError):
    """A listing page was full but carried no continuation token.

    The endpoint returned as many items as were asked for and no way to ask for the
    rest: the listing may be cut short, and reading on as if it were whole would
    silently miss resources (and close them by absence).
    """

    fmt = ("{operation}: a full page of {size} items came without a continuation token; "
           "items past the first {size} cannot be read")


@functools.cache
def _paging_model(service_name: str, api_version: str, operation: str) -> dict[str, Any]:
    """The paginator definition of ``operation`` (botocore's paginators-1.json)."""
    model = botocore.session.get_session().get_paginator_model(service_name, api_version)
    return dict(model.get_paginator(operation))


def _as_tuple(value: Any) -> tuple[str, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) if value else ()


def pages(
    client: Any, operation: str, keys: tuple[str, ...], **kwargs: Any
) -> Iterator[dict[str, Any]]:
    """Every page of ``operation``, one in memory at a time, never silently cut short.

    Pages are asked for at the caller's ``PaginationConfig.PageSize``, else at the
    largest size the service model allows. A page holding that many items (under
    ``keys``, JMESPath expressions, together) without a continuation token raises
    :class:`IncompleteListing`
    once it has been handed over: a server that caps its answer without saying so must
    not truncate the listing silently (and let its missing resources be closed).
    """
    model = client.meta.service_model
    api_name = client.meta.method_to_api_mapping.get(operation, operation)
    paging = _paging_model(model.service_name, model.api_version, api_name)
    config = dict(kwargs.pop("PaginationConfig", None) or {})
    limit_key = paging.get("limit_key")
    size = config.get("PageSize")
    if size is None and limit_key:
        member = model.operation_model(api_name).input_shape.members.get(limit_key)
        size = member.metadata.get("max") if member is not None else None
        if size is not None:
            config["PageSize"] = size
    tokens = _as_tuple(paging.get("output_token"))
    for page in client.get_paginator(operation).paginate(PaginationConfig=config, **kwargs):
        yield page
        count = sum(len(jmespath.search(k, page) or []) for k in keys)
        if size and count >= size and not any(jmespath.search(t, page) for t in tokens):
            raise IncompleteListing(operation=api_name, size=size)


def paginate(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[Any]:
    """Items under ``key`` of every page of ``operation`` (see :func:`pages`)."""
    for page in pages(client, operation, (key,), **kwargs):
        yield from page.get(key) or []


def actions(
    *operations: str, renamed: Mapping[str, str | None] | None = None
) -> dict[str, str | None]:
    """API operation → the IAM action it needs (see docs/permissions/aws.json).

    Most operations need the action of their own name (``ec2:DescribeVolumes``): list
    them in ``operations``. ``renamed`` maps those whose action is named otherwise
    (``s3:ListBuckets`` needs ``s3:ListAllMyBuckets``), or None where none is needed.
    """
    return {**{op: op for op in operations}, **(renamed or {})}


def as_list(value: Any) -> list[Any]:
    """A policy element that may be a single value or a list, as a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def without(mapping: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """``mapping`` less ``keys`` (fields that change on every read)."""
    drop = set(keys)
    return {k: v for k, v in mapping.items() if k not in drop}
