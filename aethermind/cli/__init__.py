"""The ``aethermind`` command: the composition root, the only place that wires the database,
the receiver and the reports together.

Every command that prints a result takes ``--json`` and then prints exactly one JSON document
on stdout; logs go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence

from aethermind.cli.common import CliError, Command
from aethermind.cli.parser import build_parser

__all__ = ["CliError", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from aethermind.receiver.logs import configure_logging
    from aethermind.receiver.serve import install_uvloop

    configure_logging(args.log_level.upper())
    install_uvloop()
    handler: Command = args.handler
    try:
        asyncio.run(handler(args))
    except CliError as exc:
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps({"error": str(exc)}) + "\n")
        else:
            print(f"aethermind: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
