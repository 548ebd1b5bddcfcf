"""``python -m imgclf.serving``: serve the champion on loopback (``make serve``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m imgclf.serving", description=__doc__)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--port", type=int, default=int(os.environ.get("SERVE_PORT", "8000")))
    p.add_argument(
        "--version",
        default="",
        help="serve this registry version instead of following the champion alias",
    )
    p.add_argument(
        "--refresh",
        type=float,
        default=float(os.environ.get("IMGCLF_SERVE_REFRESH", "5")),
        help="seconds between checks of the champion alias (IMGCLF_SERVE_REFRESH, default 5)",
    )
    p.add_argument(
        "--max-inflight",
        type=int,
        default=int(os.environ.get("IMGCLF_SERVE_MAX_INFLIGHT", "4")),
        help="requests read and scored at once; more wait (bounds memory)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.refresh <= 0 or args.max_inflight < 1:
        raise SystemExit("--refresh must be > 0 and --max-inflight >= 1")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    import uvicorn

    from imgclf.serving.app import create_app
    from imgclf.serving.champion import Champion
    from imgclf.settings import Settings

    settings = Settings.from_env()
    app = create_app(
        Champion(settings, args.version or None),
        max_file_bytes=settings.max_file_bytes,
        refresh_seconds=args.refresh,
        max_inflight=args.max_inflight,
    )
    # one process: the model is loaded once; uvicorn's own cap answers 503 past 64 connections
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        limit_concurrency=64,
        timeout_keep_alive=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
