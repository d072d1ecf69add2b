"""What every benchmark does the same way: peak memory, scratch databases."""

from __future__ import annotations

import resource
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager


def peak_rss_mb() -> float:
    """This process's peak RSS in MB.

    ``VmHWM`` on Linux: ``ru_maxrss`` survives ``exec``, so a child started by a parent
    that holds a large fake estate would report the parent's peak, not its own.
    ``ru_maxrss`` elsewhere (bytes on macOS, KiB on Linux and the BSDs).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024


@contextmanager
def scratch_database(
    engine_kind: str, pg_url: str, *, keep: bool = False, reuse: str | None = None
) -> Iterator[str]:
    """The URL of an empty database for one measurement, dropped afterwards.

    ``engine_kind`` is ``sqlite`` (a file in a new temporary directory) or
    ``postgresql`` (a new database on the server of ``pg_url``, named
    ``annexa_bench_<random>``, dropped with ``FORCE``). ``reuse`` yields that URL
    untouched (a database kept by an earlier ``keep=True`` run); ``keep`` leaves the
    database in place and prints its URL.
    """
    if reuse:
        yield reuse
        return
    if engine_kind == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
        yield url
        if keep:
            print(f"kept {url}", flush=True)
        return
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"annexa_bench_{uuid.uuid4().hex[:8]}"
    admin = make_url(pg_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = make_url(pg_url).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(False)
    finally:
        if keep:
            print(f"kept {url.render_as_string(False)}", flush=True)
        else:
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
