"""`python -m syncswim_lib.sandbox.salesforce serve [--port N] [--data-dir D] [--schema FILE]`.

Prints one JSON line (url, ca_path, tokens, users) and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from .emulator import start_emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m syncswim_lib.sandbox.salesforce")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the Salesforce emulator")
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--data-dir", default=None)
    serve.add_argument("--schema", default=None, help="JSON file with extra objects/fields")
    serve.add_argument("--api-limit", type=int, default=15000)
    args = parser.parse_args(argv)
    emu = start_emulator(
        port=args.port, data_dir=args.data_dir, schema=args.schema, api_limit=args.api_limit
    )
    done = threading.Event()

    def stop(_sig: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    info = {
        "url": emu.url,
        "ca_path": str(emu.ca_path),
        "tokens": {k: emu.token(k) for k in emu.users},
        "users": {k: u.user_id for k, u in emu.users.items()},
    }
    print(json.dumps(info), flush=True)
    done.wait()
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
