"""The ``mlsys_lab`` command line: ``python -m mlsys_lab <command> ...`` (also installed as ``mlsys-lab``).

Commands:

* ``student SRC... --out DIR``: write student copies of solution notebooks (solutions replaced by stubs
  that raise ``NotImplementedError``, outputs cleared).
* ``serve [--model-repository DIR] [--http-port N] [--host H]``: run the Triton-style inference server
  (KServe v2 over HTTP) on a model repository, by default the example one shipped in the package.

Each command is one ``_add_<name>(subparsers)`` function that registers its parser and sets
``handler``, a function ``(args) -> exit status``; a new command (e.g. ``serve``) adds one more such
function to ``COMMANDS``. Handlers import what they need lazily, so one command's dependencies are not
needed by another.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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


def _resource(text: str) -> tuple[str, int]:
    name, sep, count = text.rpartition(":")
    if not sep or not name or not count.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME:COUNT (e.g. R1:4), got {text!r}")
    return name, int(count)


def _run_serve(args: argparse.Namespace) -> int:
    import logging

    from .serving.server import DEFAULT_MODEL_REPOSITORY, event_loop_factory, serve

    repo = args.model_repository or DEFAULT_MODEL_REPOSITORY
    if not repo.is_dir():
        raise CommandError(f"model repository {repo} is not a folder")
    if not 0 <= args.http_port <= 65535:
        raise CommandError(f"--http-port must lie in 0..65535, got {args.http_port}")
    from .serving.trace import parse_trace_config

    try:
        event_loop_factory(args.event_loop)
        trace_settings = parse_trace_config(args.trace_config or [])
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return serve(repo, host=args.host, port=args.http_port, models=args.load_model or None,
                 rate_limit=args.rate_limit, rate_limit_resources=dict(args.rate_limit_resource or []),
                 max_body_size=args.http_max_input_size, exit_on_error=args.exit_on_error,
                 echo=lambda line: print(line, flush=True), event_loop=args.event_loop,
                 trace_settings=trace_settings)


def _add_serve(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the inference server (KServe v2 over HTTP)",
        description=(
            "Serve a Triton-style model repository over HTTP with the KServe v2 protocol, so that "
            "tritonclient and perf_analyzer can use it. Logs the models it loaded; stops on SIGINT or "
            "SIGTERM after answering the requests it had accepted."
        ),
    )
    p.add_argument("--model-repository", type=Path, default=None, metavar="DIR",
                   help="model repository (default: the example repository shipped in the package)")
    p.add_argument("--http-port", type=int, default=8000, metavar="N", help="port to listen on (default 8000; "
                   "0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--load-model", action="append", metavar="NAME",
                   help="load only this model (repeatable; an ensemble brings the models it uses)")
    p.add_argument("--rate-limit", choices=["off", "execution_count"], default="off",
                   help="rate limiter mode (default off)")
    p.add_argument("--rate-limit-resource", action="append", type=_resource, metavar="NAME:COUNT",
                   help="how many of a rate-limiter resource the server has (repeatable)")
    p.add_argument("--http-max-input-size", type=int, default=None, metavar="BYTES",
                   help="largest request body accepted (default 64 MiB)")
    p.add_argument("--no-exit-on-error", dest="exit_on_error", action="store_false",
                   help="keep serving the other models when one fails to load")
    p.add_argument("--trace-config", action="append", metavar="[triton,]SETTING=VALUE",
                   help="request tracing as Triton's --trace-config: level=TIMESTAMPS, rate=N, count=N, "
                        "triton,file=PATH, triton,log-frequency=N (repeat the option for each)")
    p.add_argument("--event-loop", choices=["auto", "asyncio", "uvloop"], default="auto",
                   help="the asyncio event loop (default auto: uvloop when installed, else asyncio's own)")
    p.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    p.set_defaults(handler=_run_serve)


#: One registration function per command, in the order ``--help`` lists them.
COMMANDS = [_add_student, _add_serve]


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
