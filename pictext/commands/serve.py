"""`pictext serve`: the web page and JSON API over an index, with the Generate tab's models."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pictext.commands.common import Subparsers
from pictext.commands.search import index_args, open_index
from pictext.errors import MissingFileError, UsageError
from pictext.hub import ModelNotFoundError


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from pictext.server.app import LOCAL_HOSTS, create_app

    token = _serve_token(args)
    wildcard = args.host in ("0.0.0.0", "::", "")
    if args.host not in LOCAL_HOSTS and token is None:
        raise UsageError(
            f"--host {args.host} exposes the server beyond this machine; give a token in $PICTEXT_TOKEN "
            "or --token-file FILE (or --token SECRET, which other local users can see in ps)"
        )
    allowed = None if wildcard else (*LOCAL_HOSTS, args.host.lower(), *(h.lower() for h in args.allow_host))
    index = open_index(args, create=True)  # pictext index's folder, or an index built by pictext index build
    app = create_app(index, token=token, allowed_hosts=allowed, generation=_generation(args))
    # create_app loaded the model now, not at the first request
    print(f"serving {index.path} ({len(index)} images) at http://{args.host}:{args.port}/", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _generation(args: argparse.Namespace):
    """The Generate tab's methods: each one whose models (those given, else its defaults) are on this machine;
    they load at their first use and stay loaded. A method whose model is missing is left out, with a note."""
    from pictext import hub
    from pictext.generate.base import METHODS, method
    from pictext.server.routes.generate import Generation

    offered = {}
    for name in METHODS:
        cls = method(name)
        given = {m.name: getattr(args, m.name) for m in cls.MODELS if getattr(args, m.name, None)}
        specs = cls.models_for(None, given)
        try:
            for spec in specs.values():
                for one in spec if isinstance(spec, list) else [spec]:
                    hub.resolve(one)
        except ModelNotFoundError as e:
            if given:
                raise
            print(f"pictext: the Generate tab offers no {name} ({e})", file=sys.stderr)
            continue
        offered[name] = given
    return Generation(offered) if offered else None


def _serve_token(args: argparse.Namespace) -> str | None:
    """The token from --token-file, $PICTEXT_TOKEN or --token (in that order), or None."""
    if args.token_file:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise MissingFileError(f"--token-file {args.token_file}: {e.strerror or e}") from e
    return os.environ.get("PICTEXT_TOKEN") or args.token


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, got {text!r}")
    return int(text)


def register(sub: Subparsers) -> None:
    p = sub.add_parser("serve", help="a local web page and JSON API over the index, and the Generate tab")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; anything but localhost needs --token")
    p.add_argument("--port", type=_port, default=8000)
    p.add_argument("--token-file", help="a file holding the token (16+ characters) every request must carry")
    p.add_argument("--token", help="the token itself; $PICTEXT_TOKEN or --token-file keep it out of ps")
    p.add_argument("--allow-host", action="append", default=[],
                   help="another host name the server answers to (repeatable)")  # fmt: skip
    g = p.add_argument_group("the Generate tab's models (default: each method's, as pictext generate takes them)")
    g.add_argument("--clip", action="append", help="vqgan-clip's guiding and dalle's reranking CLIP, repeatable")
    g.add_argument("--vqgan", help="vqgan-clip's VQGAN")
    g.add_argument("--dalle", help="the DALL-E")
    g.add_argument("--unclip", help="the unCLIP")
    index_args(p)
    p.set_defaults(run=cmd_serve)
