"""The ``fieldlab`` command line: one subcommand per pipeline step, imported only when it runs.

Each subcommand lives in a module exposing ``add_arguments(parser)`` and ``run(args) -> int``; registering a new
one is one line in :data:`COMMANDS`. ``fieldlab --help`` imports no heavy library.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from fieldlab.errors import FieldlabError

#: name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("fieldlab.commands.config", "print the resolved, validated configuration"),
    "simulate-potential": ("fieldlab.commands.simulate_potential", "generate the potential corpus (FEM)"),
    "models": ("fieldlab.commands.models", "describe the operator models (--summary)"),
    "train": ("fieldlab.commands.train", "train the operator model of model.backbone"),
    "eval-rivals": ("fieldlab.commands.eval_rivals", "run the classical rivals once (eval-sr reads them)"),
    "eval-sr": ("fieldlab.commands.eval_sr", "evaluate at base and 2x resolution (zero-shot)"),
    "predict": ("fieldlab.commands.predict", "predict the potential of your own samples, with an error estimate"),
    "simulate-mpm": ("fieldlab.commands.simulate_mpm", "simulate an MLS-MPM scene and write its fields"),
    "inr-fit": ("fieldlab.commands.inr_fit", "fit one implicit neural representation to an MPM field"),
    "explore": ("fieldlab.commands.explore", "run the UCB exploration loop over INR configurations"),
    "report": ("fieldlab.commands.report", "print the headline results from the metrics files"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Top-level parser; the subparser of ``command`` (if given) gets its module's full arguments."""
    parser = argparse.ArgumentParser(prog="fieldlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(sp)
    return parser


def guarded(fn: Callable[[], int]) -> int:
    """Run ``fn`` with one BLAS thread (:func:`fieldlab.core.threads.blas_threads`); a :class:`FieldlabError` becomes
    one ``error:`` line on stderr and exit status 2."""
    from fieldlab.core.threads import blas_threads

    try:
        with blas_threads():
            return fn()
    except FieldlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command][0])
    return guarded(lambda: module.run(args))


if __name__ == "__main__":
    sys.exit(main())
