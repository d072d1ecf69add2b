"""``annexa serve``: the web console (collector/console), read-only by default."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from collector.clikit import EXIT_USAGE, ConfigOpt, UsageError, app, command, err
from core.net import is_loopback


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    database_url: Annotated[
        str | None,
        typer.Option("--database-url", help="Database to read (default: the config's)."),
    ] = None,
    auth: Annotated[
        Path | None,
        typer.Option(
            "--auth",
            help="Access file (TOML): tokens by reference or SHA-256 with roles viewer / "
            "auditor / admin, optional [oidc]. Without it: anonymous viewing, loopback only.",
        ),
    ] = None,
    comments: Annotated[
        bool,
        typer.Option(
            "--comments",
            help="Let auditors record comments and evidence requests (signed decisions): "
            "the only write the console makes. Without it the database is opened read-only.",
        ),
    ] = False,
    hash_token: Annotated[
        bool,
        typer.Option(
            "--hash-token",
            help="Read a token on standard input, print its SHA-256 for the access file, exit.",
        ),
    ] = False,
) -> None:
    """Serve the web console: controls, findings, evidence with diffs, runs; --at anywhere."""
    from collector.console import build
    from collector.console.auth import AccessFileError, load_access, open_access
    from collector.console.auth import hash_token as digest

    if hash_token:
        token = sys.stdin.readline().strip()
        if not token:
            err.print("[bold red]error:[/] no token on standard input")
            raise typer.Exit(EXIT_USAGE)
        typer.echo(digest(token))
        return
    with command(config) as cmd:
        settings = cmd.settings
        if database_url:
            import os

            from collector.config import ENV_DATABASE_URL

            os.environ[ENV_DATABASE_URL] = database_url
        try:
            access = load_access(auth) if auth else open_access()
        except AccessFileError as exc:
            raise UsageError(f"invalid access file: {exc}") from None
        if access.anonymous and not is_loopback(host):
            raise UsageError(
                f"--host {host}: without --auth the console only listens on loopback "
                "(anyone reaching it could read the evidence)",
            )
        if comments and access.anonymous:
            raise UsageError("--comments needs --auth: a comment names its author")
        index = cmd.index(check_ids=False)
        engine = cmd.engine(migrate=False, write=comments)
        oidc = None
        if access.oidc is not None:
            from collector.console.oidc import OidcLogin

            oidc = OidcLogin(access.oidc)
        asgi = build(settings, engine, index, access, comments=comments, oidc=oidc)
        import uvicorn

        err.print(
            f"annexa console on http://{host}:{port}/ "
            f"({'comments on' if comments else 'read-only'}"
            f"{', anonymous viewing' if access.anonymous else ''})",
            highlight=False,
        )
        uvicorn.run(asgi, host=host, port=port, log_level="warning", server_header=False,
                    proxy_headers=False)
