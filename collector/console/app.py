"""The web console: server-rendered pages over the evidence store (``annexa serve``).

Starlette + Jinja2 (autoescaped everywhere), htmx served from ``static/`` (no Node build,
no CDN). Security is in the framing, not in each page: every response carries a strict
Content-Security-Policy (``default-src 'self'``: no inline script or style, so a
hostile string planted in evidence cannot run even if it escaped escaping), sessions
are signed cookies, every form has a CSRF token, and logins are throttled.

The console reads only — except auditors' comments and evidence requests when the
server was started with ``--comments``; those are recorded as signed decisions
(store/comments.py) and go into the audit package.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import structlog
from jinja2 import Environment, FileSystemLoader
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector.console import data
from collector.console.auth import Access, LoginLimiter, Person, csrf_ok, csrf_token
from collector.output import FINDING_COLUMNS, OutputFormat, serialise, serialise_chunks
from store.status import CONTROL_STATUSES

HERE = Path(__file__).resolve().parent
log = structlog.get_logger("annexa.console")

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


class SecurityHeaders:
    """Adds the CSP and companion headers to every response (pages, files, errors), and
    ``Server-Timing: app;dur=…`` (time until the response starts: what a page costs the
    server, read by benchmarks/console.py and by a browser's developer tools)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()

        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["server-timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
                for k, v in SECURITY_HEADERS.items():
                    headers[k] = v
                if scope.get("path", "").startswith("/static/"):
                    headers["cache-control"] = "public, max-age=3600"
                else:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with)


@dataclass
class Console:
    """Everything the routes need, built once by :func:`create_app`."""

    ctx: data.Context
    access: Access
    #: Records a comment: (decision) → run id. None: the console is read-only.
    record: Callable[[Any], str] | None = None
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    clock: Callable[[], float] = time.time
    oidc: Any = None


def parse_at(text: str | None) -> datetime | None:
    """``?at=`` (ISO 8601 date or date-time; UTC if no offset); None/empty/now: now."""
    if not text or text == "now":
        return None
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(
            400, f"at: {text[:60]!r} is not an ISO 8601 date or date-time"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _fmt_time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)


def _url(path: str, **params: Any) -> str:
    q = {k: v for k, v in params.items() if v not in (None, "")}
    return path + ("?" + urlencode(q) if q else "")


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value, every template: nothing is marked safe
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["t"] = _fmt_time
    env.globals["url"] = _url
    return env


templates = Jinja2Templates(env=_env())


def _person(request: Request, console: Console) -> Person | None:
    if console.access.anonymous:
        return Person("local viewer", "viewer")
    s = request.session
    user, role, exp = s.get("user"), s.get("role"), s.get("exp")
    if not isinstance(user, str) or role not in ("viewer", "auditor", "admin"):
        return None
    if not isinstance(exp, (int, float)) or exp < console.clock():
        request.session.clear()
        return None
    return Person(user, role)


Handler = Callable[[Request, Console, Person], Awaitable[Response]]


def page(role: str = "viewer") -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Route wrapper: a logged-in person with at least ``role`` (else login / 403)."""

    def wrap(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            console: Console = request.app.state.console
            who = _person(request, console)
            if who is None:
                return RedirectResponse(_url("/login", next=request.url.path), status_code=303)
            if not who.can(role):
                raise HTTPException(403, f"this needs the {role} role; you are a {who.role}")
            return await fn(request, console, who)

        return endpoint

    return wrap


def render(request: Request, name: str, who: Person | None, http_status: int = 200,
           **context: Any) -> Response:
    console: Console = request.app.state.console
    at_text = request.query_params.get("at") or ""
    base = {
        "who": who,
        "at": at_text,
        "at_shown": _fmt_time(parse_at(at_text)) if at_text else "",
        "csrf": csrf_token(request.session),
        "anonymous": console.access.anonymous,
        "can_comment": bool(who and who.can("auditor") and console.record is not None),
        "statuses": CONTROL_STATUSES,
        "path": request.url.path,
    }
    return templates.TemplateResponse(request, name, base | context, status_code=http_status)


def download(request: Request, rows: list[dict[str, Any]], columns: list[tuple[str, str]],
             name: str) -> Response | None:
    """``?format=csv|json``: the table exactly as the CLI's ``--format`` prints it."""
    fmt = request.query_params.get("format")
    if fmt not in ("csv", "json"):
        return None
    text = serialise(rows, columns, OutputFormat(fmt))
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
    return Response(text, media_type=media, headers={
        "content-disposition": f'attachment; filename="{name}.{fmt}"'})


async def table_page(request: Request, console: Console, who: Person, name: str,
                     read: Callable[..., Any], *args: Any, **context: Any) -> Response:
    """The page ``{name}.html`` of the table ``read(ctx, at, *args)`` returns as of
    ``?at`` (read in a worker thread), or that table as ``?format=csv|json``, downloaded
    as ``{name}.{format}``."""
    at = parse_at(request.query_params.get("at"))
    d = await run_in_threadpool(read, console.ctx, at, *args)
    got = download(request, d["rows"], d["columns"], name)
    return got or render(request, f"{name}.html", who, **context, **d)


def catalog_control(request: Request, console: Console) -> str:
    """The control id of the path; 404 unless the catalog has it."""
    cid: str = request.path_params["cid"]
    if cid not in console.ctx.index.catalog:
        raise HTTPException(404, "no such control")
    return cid


# -- pages ---------------------------------------------------------------------------------


@page()
async def overview(request: Request, console: Console, who: Person) -> Response:
    at = parse_at(request.query_params.get("at"))
    theme = request.query_params.get("theme") or None
    status = request.query_params.get("status") or None
    if theme not in (None, *data.THEMES) or status not in (None, *CONTROL_STATUSES):
        raise HTTPException(400, "unknown theme or status filter")
    d = await run_in_threadpool(data.overview, console.ctx, at, theme, status)
    got = download(request, d["rows"], d["columns"], "controls")
    return got or render(request, "overview.html", who, theme=theme, status=status,
                         themes_all=data.THEMES, **d)


@page()
async def trend(request: Request, console: Console, who: Person) -> Response:
    at = parse_at(request.query_params.get("at"))
    d = await run_in_threadpool(data.trend, console.ctx, at)
    return render(request, "trend.html", who, **d)


@page()
async def control(request: Request, console: Console, who: Person) -> Response:
    cid = catalog_control(request, console)
    if request.query_params.get("format") in ("csv", "json"):
        return await _control_download(request, console, cid)
    at = parse_at(request.query_params.get("at"))
    try:
        after = data.decode_cursor(request.query_params.get("after"))
    except ValueError:
        raise HTTPException(400, "after: not a page of this console's") from None
    d = await run_in_threadpool(data.control, console.ctx, cid, at, after)
    from store.comments import comments

    def remarks() -> list[Any]:
        # Comments on this control's findings: those on a finding of one of its checks
        # (a finding's target is "source key", its key starts with "check|"): bounded by
        # the comments, not by the findings in force.
        checks = set(d["checks"])
        with console.ctx.engine.connect() as conn:
            return [
                *comments(conn, at, target_kind="control", targets=[cid]),
                *(c for c in comments(conn, at, target_kind="finding")
                  if c.target.partition(" ")[2].partition("|")[0] in checks),
            ]

    found = await run_in_threadpool(remarks)
    found.sort(key=lambda c: c.recorded_at)
    return render(request, "control.html", who, cid=cid, comments=found, **d)


@page()
async def control_findings(request: Request, console: Console, who: Person) -> Response:
    """Every finding of a control at ``?at=`` as CSV (default) or JSON, streamed."""
    cid = catalog_control(request, console)
    return await _control_download(request, console, cid)


async def _control_download(request: Request, console: Console, cid: str) -> Response:
    fmt = request.query_params.get("format") or "csv"
    if fmt not in ("csv", "json"):
        raise HTTPException(400, "format must be csv or json")
    at = parse_at(request.query_params.get("at"))
    rows = await run_in_threadpool(data.control_findings, console.ctx, cid, at)
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
    return StreamingResponse(
        iterate_in_threadpool(serialise_chunks(rows, FINDING_COLUMNS, OutputFormat(fmt))),
        media_type=media,
        headers={"content-disposition": f'attachment; filename="findings-{cid}.{fmt}"'},
    )


@page()
async def control_timeline(request: Request, console: Console, who: Person) -> Response:
    cid = catalog_control(request, console)
    at = parse_at(request.query_params.get("at"))
    rows = await run_in_threadpool(data.timeline, console.ctx, cid, at)
    return render(request, "timeline.html", who, timeline=rows)


@page()
async def resource(request: Request, console: Console, who: Person) -> Response:
    source = request.query_params.get("source") or ""
    key = request.query_params.get("key") or ""
    at = parse_at(request.query_params.get("at"))

    def version(name: str) -> int | None:
        v = request.query_params.get(name)
        if not v:
            return None
        if not v.isdigit():
            raise HTTPException(400, f"{name} must be a version number")
        return int(v)

    d = await run_in_threadpool(
        data.resource, console.ctx, source, key, at, version("a"), version("b")
    )
    if d is None:
        raise HTTPException(404, "no evidence item with that source and key at that instant")
    got = download(request, d["versions"], d["columns"], "evidence-versions")
    return got or render(request, "resource.html", who, **d)


@page()
async def runs(request: Request, console: Console, who: Person) -> Response:
    return await table_page(request, console, who, "runs", data.runs)


@page()
async def soa(request: Request, console: Console, who: Person) -> Response:
    return await table_page(request, console, who, "soa", data.soa)


@page()
async def risks(request: Request, console: Console, who: Person) -> Response:
    flagged = request.query_params.get("flagged") in ("1", "true", "yes", "on")
    return await table_page(request, console, who, "risks", data.risks, flagged,
                            flagged=flagged)


@page()
async def population(request: Request, console: Console, who: Person) -> Response:
    from store.populations import BY_CHOICES, KINDS

    q = request.query_params
    at = parse_at(q.get("at"))
    process = q.get("process") or "change"
    period = (q.get("period") or "").strip()
    source = q.get("source") or None
    by = q.get("by") or None
    if process not in KINDS:
        raise HTTPException(400, f"process must be one of {', '.join(KINDS)}")
    if by not in (None, *BY_CHOICES):
        raise HTTPException(400, f"by must be one of {', '.join(BY_CHOICES)}")
    form = {"process": process, "period": period, "source": source or "", "by": by or "",
            "kinds": KINDS, "by_choices": BY_CHOICES}
    if not period:  # nothing to read until a period is chosen
        return render(request, "population.html", who, rows=None, **form)
    try:
        d = await run_in_threadpool(data.population, console.ctx, process, period, at,
                                    source, by)
    except ValueError as exc:
        raise HTTPException(400, f"period: {exc}") from None
    got = download(request, d["rows"], d["columns"], f"population-{process}")
    return got or render(request, "population.html", who, **form, **d)


@page()
async def samples(request: Request, console: Console, who: Person) -> Response:
    return await table_page(request, console, who, "samples", data.samples)


@page()
async def verify_run(request: Request, console: Console, who: Person) -> Response:
    run_id = request.path_params["run_id"]
    d = await run_in_threadpool(data.verify_run, console.ctx, run_id)
    return render(request, "verify.html", who, v=d)


@page("auditor")
async def add_comment(request: Request, console: Console, who: Person) -> Response:
    from store.comments import CommentError, comment_decision

    form = await request.form()
    if not csrf_ok(request.session, form.get("csrf")):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
    if console.record is None:
        raise HTTPException(403, "this console is read-only (start it with --comments)")
    cid = str(form.get("control") or "")
    if cid not in console.ctx.index.catalog:
        raise HTTPException(404, "no such control")
    target = str(form.get("target") or "")
    target_kind = "control" if target in ("", cid) else "finding"
    try:
        decision = comment_decision(
            kind=str(form.get("kind") or "comment"),
            target_kind=target_kind,
            target=target or cid,
            author=who.user,
            role=who.role,
            text=str(form.get("text") or ""),
        )
    except CommentError as exc:
        raise HTTPException(400, str(exc)) from None
    run_id = await run_in_threadpool(console.record, decision)
    log.info("comment recorded", control=cid, kind=decision.payload["kind"], run_id=run_id,
             user=who.user)
    return RedirectResponse(f"/controls/{cid}#comments", status_code=303)


# -- login ---------------------------------------------------------------------------------


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _safe_next(value: Any) -> str:
    n = str(value or "/")
    return n if n.startswith("/") and not n.startswith("//") and "\\" not in n else "/"


def _start_session(request: Request, console: Console, who: Person) -> None:
    request.session.clear()  # a new session on login: no fixation
    request.session.update(
        user=who.user,
        role=who.role,
        exp=console.clock() + console.access.session_hours * 3600,
        csrf=secrets.token_urlsafe(32),
    )


async def login(request: Request) -> Response:
    console: Console = request.app.state.console
    if console.access.anonymous:
        return RedirectResponse("/", status_code=303)
    nxt = _safe_next(request.query_params.get("next"))
    if request.method == "GET":
        return render(request, "login.html", None, next=nxt, oidc=console.oidc is not None)
    client = _client(request)
    wait = console.limiter.retry_after(client)
    if wait:
        log.warning("login throttled", client=client)
        resp = render(request, "login.html", None, http_status=429, next=nxt,
                      oidc=console.oidc is not None,
                      error=f"too many failed logins: try again in {wait} s")
        resp.headers["retry-after"] = str(wait)
        return resp
    form = await request.form()
    if not csrf_ok(request.session, form.get("csrf")):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
    token = str(form.get("token") or "")
    who = console.access.check_token(token) if token else None
    if who is None:
        console.limiter.failed(client)
        log.warning("login refused", client=client)  # never the token
        return render(request, "login.html", None, http_status=401, next=nxt,
                      oidc=console.oidc is not None, error="unknown token")
    console.limiter.succeeded(client)
    _start_session(request, console, who)
    log.info("login", user=who.user, role=who.role, client=client)
    return RedirectResponse(_safe_next(form.get("next")), status_code=303)


async def logout(request: Request) -> Response:
    form = await request.form()
    if not csrf_ok(request.session, form.get("csrf")):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    console: Console = request.app.state.console
    try:
        who = _person(request, console)
    except Exception:  # noqa: BLE001 - an error page must render whatever broke
        who = None
    return templates.TemplateResponse(
        request,
        "error.html",
        {"who": who, "at": "", "at_shown": "", "csrf": "", "anonymous": console.access.anonymous,
         "code": exc.status_code, "detail": exc.detail, "path": request.url.path},
        status_code=exc.status_code,
    )


def create_app(console: Console) -> Starlette:
    routes = [
        Route("/", overview),
        Route("/trend", trend),
        Route("/controls/{cid}", control),
        Route("/controls/{cid}/timeline", control_timeline),
        Route("/controls/{cid}/findings", control_findings),
        Route("/resource", resource),
        Route("/runs", runs),
        Route("/runs/{run_id}/verify", verify_run),
        Route("/soa", soa),
        Route("/risks", risks),
        Route("/population", population),
        Route("/samples", samples),
        Route("/comments", add_comment, methods=["POST"]),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    if console.oidc is not None:
        at_login = next(i for i, r in enumerate(routes) if getattr(r, "path", "") == "/login")
        routes[at_login:at_login] = console.oidc.routes()  # before /login, as before
    access = console.access
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=access.session_secret,
                session_cookie="annexa_console",
                max_age=int(access.session_hours * 3600),
                # Lax, not Strict: the OpenID provider redirects back cross-site, and the
                # callback needs the session (state, nonce). Forms carry CSRF tokens.
                same_site="lax",
                https_only=access.https_only,
            ),
        ],
        exception_handlers={HTTPException: http_error},
    )
    app.state.console = console
    return app
