"""The ``weightinit`` command line (also ``python -m weightinit``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from weightinit._table import format_table
from weightinit.registry import catalog


def _list(args: argparse.Namespace) -> int:
    entries = catalog()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": e.name,
                        "function": f"weightinit.{e.function.__name__}",
                        "aliases": list(e.aliases),
                        "formula": e.formula,
                        "activations": e.activations,
                        "paper": e.paper,
                    }
                    for e in entries
                ],
                indent=2,
            )
        )
        return 0
    rows = [
        (e.name, ", ".join(e.aliases) or "-", e.formula, e.activations, e.paper) for e in entries
    ]
    headers = ("name", "aliases", "formula", "recommended for", "paper")
    print(format_table(headers, rows, max_widths=(None, 16, 44, 34, 30)))
    print(
        f"\n{len(entries)} initializers. Call them as weightinit.<name>_(tensor, ...) "
        "or look one up with weightinit.get('<name or alias>')."
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="weightinit", description="Initialize neural networks well."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="print the catalog of initializers")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=_list)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
