"""The front: a thread and event loop of its own, which never reads a model stream, for what
must answer at once, and the process's HTTP listener on it, open from the first second.

Why a thread: one event loop reads every research stream. With hundreds open, each of its
turns takes milliseconds, and an acknowledgement that needed a dozen turns (the request, Bolt,
the inbox write's round trips to the database's thread) was as late as that loop was busy:
0.8-1.9 s at 400 streams (issue 13, bench/ack_latency.py). On the front's loop an event that
causes work is recorded in the inbox and acknowledged at once (handlers/events.py,
EventIntake); its handling is then handed to the main loop, exactly as a replay from the inbox
is. Every other request (slash commands, buttons, modals, the install pages, readiness) is
still answered by Bolt on the main loop, the front waiting for the answer: those listeners use
the main loop's clients and state, and their acknowledgements carry what the listener decides.

Why the listener opens first (`Doorway`): building the rest of the bot takes a second or more
(imports, the database, auth.test with Slack). A port opened only after that refused
connections meanwhile: a slash command sent during a restart failed at once, and a liveness
probe could not tell a slow start (migrations on a first start) from a hung one. So
`python -m bot` opens the port before it imports the rest; until the bot's routes are served,
GET /healthz answers 200, GET /readyz answers 503 "starting", and every other request waits
for the routes, up to START_WAIT_SECONDS (inside Slack's 3 s), and is then answered 503 with
Retry-After. This module imports only what that needs (asyncio and aiohttp's server).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, Final, TypeVar

from aiohttp import web

from bot.config import StartupError

logger = logging.getLogger(__name__)

T = TypeVar("T")

STOP_SECONDS: Final = 5.0
START_WAIT_SECONDS: Final = 2.5
"""How long a request that came before the bot's routes waits for them (Slack gives 3 s)."""

HEALTH_PATH: Final = "/healthz"
READY_PATH: Final = "/readyz"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop for the bot's threads (the main one and the front): uvloop's where it is
    installed (everywhere but Windows), asyncio's own otherwise. Why uvloop: one loop reads
    every research stream, and with 400 of them released at once the two loop turns that
    read their sockets and wake their tasks stalled asyncio's loop 48-61 ms; uvloop's
    transports and callbacks in C, 18 ms, and it read 26,000 frames a second instead of
    19,000 (bench/ack_latency.py)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Loop:
    """Another thread's event loop, seen from this one: run a coroutine there and await its
    result here, or start one there and move on."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if _running_loop() is self.loop:
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        """Start `coro` there; its failure is logged (there is nobody to tell)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)

        def logged(done: concurrent.futures.Future[None]) -> None:
            if done.cancelled():
                return
            error = done.exception()
            if error is not None:
                logger.error("%s failed", what, exc_info=error)

        future.add_done_callback(logged)


class FrontThread:
    """The thread the transports run on, with its event loop."""

    def __init__(self, name: str = "slack-front") -> None:
        self._name = name
        self._thread: threading.Thread | None = None
        self._loop: Loop | None = None
        self.door: Doorway | None = None  # the HTTP listener, once open

    @property
    def started(self) -> bool:
        return self._thread is not None

    @property
    def loop(self) -> Loop:
        if self._loop is None:
            raise RuntimeError("the front thread has not started")
        return self._loop

    async def start(self) -> None:
        started: concurrent.futures.Future[asyncio.AbstractEventLoop] = concurrent.futures.Future()

        def serve() -> None:
            loop = new_event_loop()
            asyncio.set_event_loop(loop)
            started.set_result(loop)
            try:
                loop.run_forever()
            finally:
                _close(loop)

        self._thread = threading.Thread(target=serve, name=self._name, daemon=True)
        self._thread.start()
        self._loop = Loop(await asyncio.wrap_future(started))

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the front's loop and return its result here."""
        return await self.loop.run(coro)

    async def open(self, host: str, port: int | None) -> None:
        """Start the thread, and listen on `host`:`port` from its loop (None: no listener;
        0: any free port); what is started or open already stays. Raises CannotListen."""
        if not self.started:
            await self.start()
        if port is not None and self.door is None:
            door = Doorway()
            await self.run(door.open(host, port))
            self.door = door

    async def stop(self) -> None:
        """Close the listener, stop the loop (what else runs on it was closed before) and
        wait for the thread."""
        if self._thread is None or self._loop is None:
            return
        if self.door is not None:
            door, self.door = self.door, None
            try:
                await self.run(door.close())
            except Exception:
                logger.warning("closing the HTTP listener failed", exc_info=True)
        self._loop.loop.call_soon_threadsafe(self._loop.loop.stop)
        await asyncio.to_thread(self._thread.join, STOP_SECONDS)
        if self._thread.is_alive():
            logger.warning("the Slack front's thread did not stop within %.0f s", STOP_SECONDS)
        self._thread = None
        self._loop = None


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on the loop, let it unwind, close the loop."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        with contextlib.suppress(Exception):
            loop.run_until_complete(asyncio.wait(tasks, timeout=STOP_SECONDS))
    with contextlib.suppress(Exception):
        loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class CannotListen(StartupError):
    """The port cannot be opened; the message is for the operator."""


class Doorway:
    """The HTTP listener, on the front's loop: open before the bot is built (see the module's
    docstring), serving the bot's routes once they are handed over with `serve`."""

    def __init__(self) -> None:
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._routes: web.Application | None = None
        self._served = asyncio.Event()  # bound to the front's loop when first awaited

    async def open(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            reason = exc.strerror or type(exc).__name__
            raise CannotListen(
                f"Cannot listen on {host}:{port} ({reason}). Another process may hold the "
                "port: stop it, or set PORT (HTTP mode) or METRICS_PORT (Socket Mode) to a "
                "free one, and HOST to an address of this machine."
            ) from None
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def serve(self, routes: web.Application) -> None:
        """Answer every request with `routes`' handlers from now on (and those that waited
        for them). Its routes only: an application with middlewares is refused."""
        if routes.middlewares:
            raise ValueError("the doorway serves routes; these middlewares would be skipped")
        self._routes = routes
        self._served.set()

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if self._routes is None and request.path not in (HEALTH_PATH, READY_PATH):
            await self._wait_for_routes(request)
        routes = self._routes
        if routes is None:
            # Starting: alive, not ready, come back in a second.
            if request.path == HEALTH_PATH:
                return health_answer()
            return readiness_answer(
                {"starting": "the bot is still starting"}, headers={"Retry-After": "1"}
            )
        # The bot's route for the request; for an unknown path or method, a handler that
        # raises 404 or 405.
        found = await routes.router.resolve(request)
        return await found.handler(request)

    async def _wait_for_routes(self, request: web.Request) -> None:
        try:
            async with asyncio.timeout(START_WAIT_SECONDS):
                await self._served.wait()
        except TimeoutError:
            logger.warning(
                "answered %s %s with 503: the bot was still starting after %.1f s",
                request.method,
                request.path,
                START_WAIT_SECONDS,
            )


def health_answer() -> web.Response:
    """GET /healthz: the process serves requests."""
    return web.json_response({"status": "ok"})


def readiness_answer(
    reasons: Mapping[str, str], *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """GET /readyz: 200, or 503 naming what is not ready (each with a few words why)."""
    if reasons:
        body = {"status": "not ready", "not_ready": dict(reasons)}
        return web.json_response(body, status=503, headers=headers)
    return web.json_response({"status": "ready"})
