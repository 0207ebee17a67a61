"""A local fake of Resend's API for the delivery benchmark: POST /emails answers 200
{"id": uuid} after `--delay` seconds (default 20 ms), like a fast real provider.

    python -m bench.fake_provider --port 8025 [--delay 0.02]

GET /stats returns {"emails": N} (requests answered since start). 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

from aiohttp import web

COUNT = web.AppKey("count", list)


def build_app(delay: float) -> web.Application:
    app = web.Application()
    app[COUNT] = [0]

    async def emails(request: web.Request) -> web.Response:
        await request.read()
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response(
                {"statusCode": 401, "name": "missing_api_key", "message": "no key"}, status=401
            )
        await asyncio.sleep(delay)
        request.app[COUNT][0] += 1
        return web.json_response({"id": str(uuid.uuid4())})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"emails": request.app[COUNT][0]})

    async def domains(request: web.Request) -> web.Response:
        return web.json_response({"data": []})

    app.router.add_post("/emails", emails)
    app.router.add_get("/stats", stats)
    app.router.add_get("/domains", domains)
    app.router.add_get("/health", stats)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.02)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    web.run_app(
        build_app(args.delay),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
        backlog=1024,
    )


if __name__ == "__main__":
    main()
