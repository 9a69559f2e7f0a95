"""The `pictext` command: the root parser and `main`. Each area's subcommands live in pictext/commands/ and
register themselves; a user error (PictextError) is one line and exit status 2, anything else a bug's traceback."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pictext.commands import clip, generate, models, search, serve, train
from pictext.errors import PictextError

AREAS = (clip, search, train, generate, models, serve)


def cmd_demo(args: argparse.Namespace) -> int:
    from pictext.demo import run_demo

    run_demo()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pictext", description="CLIP, image search, and text to image by VQGAN+CLIP, DALL-E and unCLIP."
    )
    parser.add_argument("--fetch", action="store_true",
                        help="download a published model this command names if it is not here yet")  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    for area in AREAS:
        area.register(sub)
    p = sub.add_parser("demo", help="search emoji and shapes with the default CLIP, then draw with each generator")
    p.set_defaults(run=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from pictext.hub import FETCH

    args = build_parser().parse_args(argv)
    _show_warnings()
    FETCH.set(args.fetch)
    try:
        return args.run(args)
    except PictextError as e:
        print(f"pictext: error: {e}", file=sys.stderr)
        return 2
    finally:
        _leave_process_group()


def _show_warnings() -> None:
    """The library logs; the command shows its warnings (a prompt cut to fit, say) on stderr, once."""
    logger = logging.getLogger("pictext")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        logger.addHandler(_Stderr(logging.WARNING))


class _Stderr(logging.Handler):
    """Log records as `pictext: message` lines on whatever sys.stderr is when they come."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"pictext: {record.getMessage()}", file=sys.stderr)


def _leave_process_group() -> None:
    """Under torchrun, leave the process group before exiting: a gloo group left to the interpreter's shutdown
    sometimes aborts its rank after all the work is done ("terminate called without an active exception")."""
    if "torch.distributed" not in sys.modules:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
