"""``python -m collector`` is the ``annexa`` command."""

from collector.cli import main

main()
