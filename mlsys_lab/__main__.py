"""The ``mlsys_lab`` command line: ``python -m mlsys_lab <command> ...`` (also installed as ``mlsys-lab``).

Commands:

* ``student SRC... --out DIR``: write student copies of solution notebooks (solutions replaced by stubs
  that raise ``NotImplementedError``, outputs cleared).

Each command is one ``_add_<name>(subparsers)`` function that registers its parser and sets
``handler``, a function ``(args) -> exit status``; a new command (e.g. ``serve``) adds one more such
function to ``COMMANDS``. Handlers import what they need lazily, so one command's dependencies are not
needed by another.
"""

from __future__ import annotations

import argparse
import sys

PROG = "python -m mlsys_lab"


class CommandError(Exception):
    """A failure the user can fix; printed as ``<prog> <command>: error: <message>``, exit status 1."""


def _run_student(args: argparse.Namespace) -> int:
    from .course.student import StudentCopyError, write_student_copies

    try:
        copies = write_student_copies(args.sources, args.out)
    except StudentCopyError as exc:
        raise CommandError(str(exc)) from exc
    for c in copies:
        hidden = f", {c.hidden_cells} hidden cell(s) removed" if c.hidden_cells else ""
        print(f"wrote {c.target} ({c.regions} solution region(s) replaced{hidden}) from {c.source}")
    print(f"{len(copies)} student cop{'y' if len(copies) == 1 else 'ies'} in {args.out}")
    return 0


def _add_student(subparsers) -> None:
    p = subparsers.add_parser(
        "student",
        help="write student copies of solution notebooks",
        description=(
            "Write a student copy of each notebook: every region between '### BEGIN SOLUTION' and "
            "'### END SOLUTION' in a code cell becomes a stub raising NotImplementedError, cells tagged "
            "'hidden-solution' are dropped and all outputs are cleared. Folders are searched "
            "recursively and keep their layout under DIR."
        ),
    )
    p.add_argument("sources", nargs="+", metavar="SRC",
                   help="a solution notebook (.ipynb) or a folder of them")
    p.add_argument("--out", "-o", required=True, metavar="DIR",
                   help="folder to write the student copies into")
    p.set_defaults(handler=_run_student)


#: One registration function per command, in the order ``--help`` lists them.
COMMANDS = [_add_student]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="mlsys-lab course tools.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (argparse exits with 2 on a usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except CommandError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
