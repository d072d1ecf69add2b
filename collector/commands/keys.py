"""Signing keys: ``annexa keys generate`` and ``annexa keys list``.

The private key stays with the collector (referenced from ``[signing] key``); the public
key line is what auditors keep and pass to ``verify --trusted-keys`` and
``verify-package --trusted-keys``. Rotation: generate a new key, point the config at it,
and add its public line to the trusted file — runs sealed with the old key still verify
against the old line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from collector.clikit import ConfigOpt, FormatOpt, UsageError, _cli_errors, app, command
from collector.output import OutputFormat, render

keys_app = typer.Typer(help="Signing keys: generate one, list those the store recorded.")
app.add_typer(keys_app, name="keys")


@keys_app.command("generate")
def keys_generate(
    out: Annotated[
        Path, typer.Option("--out", help="Private key file to create (mode 0600).")
    ] = Path("annexa-signing.key"),
    comment: Annotated[str, typer.Option(help="A label for the public key line.")] = "",
) -> None:
    """Create an Ed25519 signing key; print its public key line and write it to OUT.pub."""
    with _cli_errors():
        from core.signing import Signer, write_private_key

        signer = Signer.generate()
        try:
            write_private_key(signer, out)
        except FileExistsError:
            raise UsageError(f"--out: {out} exists; refusing to overwrite a key") from None
        except OSError as exc:
            raise UsageError(f"--out: {out}: {exc.strerror}") from None
        public = signer.public.line() + (f" {comment}" if comment else "")
        pub = out.with_name(out.name + ".pub")
        pub.write_text(public + "\n", encoding="utf-8")
        typer.echo(public)
        typer.echo(
            f"private key: {out} (keep it with the collector: [signing] key = "
            f'{{ file = "{out}" }}); public key: {pub} (give it to your auditors)',
            err=True,
        )


@keys_app.command("list")
def keys_list(config: ConfigOpt = None, fmt: FormatOpt = OutputFormat.table) -> None:
    """Public keys the store recorded (whatever signed runs, retention or decisions)."""
    from sqlalchemy import func, select

    from store.schema import runs, signing_keys

    with command(config) as cmd:
        engine = cmd.engine(migrate=False)
        with engine.connect() as conn:
            used = dict(
                conn.execute(
                    select(runs.c.key_id, func.count()).group_by(runs.c.key_id)
                ).all()
            )
            rows = [
                {
                    "key_id": r.key_id,
                    "algorithm": r.algorithm,
                    "public_key": r.public_key,
                    "first_used_at": r.first_used_at,
                    "runs_signed": used.get(r.key_id, 0),
                }
                for r in conn.execute(select(signing_keys).order_by(signing_keys.c.first_used_at))
            ]
        render(
            rows,
            [
                ("key_id", "Key id"),
                ("first_used_at", "First used"),
                ("runs_signed", "Runs"),
                ("public_key", "Public key"),
            ],
            fmt,
            title="Signing keys",
        )
