"""C{python -m proud_twisted.rmi describe module.Interface}: print a declaration."""

from __future__ import annotations

import argparse
import sys

from proud_twisted.rmi.describe import describe, resolve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proud_twisted.rmi")
    commands = parser.add_subparsers(dest="command", required=True)
    describeCommand = commands.add_parser(
        "describe", help="print a declaration: IDs, methods, parameters, wire sizes")
    describeCommand.add_argument("declaration", nargs="+", help="module.Interface")
    options = parser.parse_args(argv)
    sys.path.insert(0, "")          # declarations in the current directory, as python -m does
    for name in options.declaration:
        try:
            print(describe(resolve(name)))
        except LookupError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
