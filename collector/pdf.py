"""The audit report as PDF, printed by headless Chromium (``annexa export --pdf``).

The report's print stylesheet opens every folded section, keeps control ids and table
headers on one line and uses A4 landscape, so the PDF holds everything the HTML does:
every failing resource with its reason and every control's status timeline.
Chromium is run with every background network feature off; the report itself allows
no network request (its Content-Security-Policy), so printing sends nothing anywhere.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--no-first-run",
    "--no-pdf-header-footer",
)


class PdfError(RuntimeError):
    """Chromium is missing or could not print (the CLI exits 2)."""


def find_chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which(
        "google-chrome"
    )
    if exe is None:
        raise PdfError(
            "--pdf needs Chromium (Debian: apt-get install chromium): none found on PATH"
        )
    return exe


def html_to_pdf(html: bytes, *, timeout: float = 120.0) -> bytes:
    """Print ``html`` to PDF with headless Chromium."""
    exe = find_chromium()
    with tempfile.TemporaryDirectory(prefix="annexa-pdf-") as tmp:
        page = Path(tmp) / "report.html"
        page.write_bytes(html)
        out = Path(tmp) / "report.pdf"
        profile = Path(tmp) / "profile"
        try:
            # The executable is Chromium found on PATH; the arguments are ours.
            proc = subprocess.run(  # noqa: S603
                [exe, *_FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={out}",
                 page.as_uri()],
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise PdfError(f"Chromium did not print the report within {timeout:.0f} s") from None
        if not out.exists() or out.stat().st_size == 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise PdfError("Chromium did not print the report: " + " / ".join(tail))
        return out.read_bytes()
