"""A fake Slack: Web API, file upload v2 and Socket Mode on one local aiohttp server.

Point the real slack_sdk at it with `AsyncWebClient(token=..., base_url=fake.api_url)`; Socket Mode
clients reach the websocket through `apps.connections.open` on the same base URL.

    async with FakeSlack() as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        await client.chat_postMessage(channel="C1", text="hi")
        [call] = await slack.wait_for_call("chat.postMessage")

Argument encodings it accepts, mirroring slack_sdk 3.47: JSON bodies (chat.*, views.*), query
strings on POST or GET (reactions.*, users.info, files.*) and form bodies (Bolt, older callers).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, WSCloseCode, WSMsgType, web

from .slack_payloads import next_ts

# Arguments whose value is JSON; form bodies and query strings carry them as JSON strings.
_JSON_ARGS = frozenset(
    {"blocks", "attachments", "view", "files", "metadata", "loading_messages", "chunks"}
)
MAX_TEXT = 40_000
MANIFEST_BOT_SCOPES = (
    "app_mentions:read",
    "assistant:write",
    "canvases:write",
    "channels:history",
    "groups:history",
    "im:history",
    "mpim:history",
    "chat:write",
    "commands",
    "files:read",
    "files:write",
    "users:read",
)
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3_000
MAX_MARKDOWN_TOTAL = 12_000
MAX_LOADING_MESSAGES = 10
MAX_SUGGESTED_PROMPTS = 4
MAX_SESSION_TITLE = 200
MAX_CANVAS_BYTES = 1024 * 1024
MAX_CONTEXT_ACTIONS = 5
SESSION_STATUSES = frozenset({"active", "processing", "suspended", "closed"})


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str | None
    error: str | None = None  # what the fake answered with ("ratelimited", ...); None if ok
    at: float = field(default_factory=time.monotonic)  # when the fake received it


@dataclass
class ResponsePost:
    """A message POSTed to a response_url (slash commands, interactions)."""

    name: str  # the last path segment of the URL, as handed out by FakeSlack.response_url()
    body: dict[str, Any]
    error: str | None = None  # what the fake answered with; None if accepted
    at: float = field(default_factory=time.monotonic)


# Slack accepts five messages per response_url (within 30 minutes).
MAX_RESPONSE_USES = 5


@dataclass
class UploadedFile:
    file_id: str
    filename: str
    length: int
    content: bytes
    title: str | None
    channel_id: str | None
    thread_ts: str | None
    initial_comment: str | None


@dataclass
class Hold:
    """A call kept unanswered: `reached` once it came in; it is answered after `release()`."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.released.set()

    async def wait_reached(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.reached.wait(), timeout)


@dataclass
class _Fault:
    status: int
    error: str
    retry_after: int
    remaining: int


@dataclass
class _PendingUpload:
    filename: str
    length: int
    content: bytes | None = None  # set once the bytes are POSTed to the upload URL


@dataclass
class Workspace:
    """A workspace (or an Enterprise Grid org, for an org-wide install) that installed the app
    through oauth.v2.access, with the bot token Slack gave it."""

    team_id: str | None  # None for an org-wide install
    enterprise_id: str | None = None
    name: str = ""
    bot_user_id: str = "UBOT"
    bot_id: str = "BBOT"
    token: str = ""
    refresh_token: str | None = None  # set when token rotation is on
    expires_at: float | None = None

    @property
    def org_wide(self) -> bool:
        return self.team_id is None


class SlackError(Exception):
    """Raised by a method handler to answer {"ok": false, "error": ...}."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def _default_users(team_id: str) -> dict[str, dict[str, Any]]:
    def user(uid: str, name: str, *, admin: bool, owner: bool = False) -> dict[str, Any]:
        return {
            "id": uid,
            "team_id": team_id,
            "name": name,
            "real_name": name.title(),
            "deleted": False,
            "is_admin": admin,
            "is_owner": owner,
            "is_bot": False,
            "tz": "UTC",
            "profile": {"display_name": name, "real_name": name.title()},
        }

    return {
        "UADMIN": user("UADMIN", "admin", admin=True),
        "UUSER": user("UUSER", "user", admin=False),
    }


def _decode_json_args(args: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_ARGS & args.keys():
        value = args[key]
        if isinstance(value, str) and value[:1] in ("[", "{"):
            # A malformed value stays a string; the method handler rejects it.
            with contextlib.suppress(json.JSONDecodeError):
                args[key] = json.loads(value)
    return args


async def _read_args(request: web.Request) -> dict[str, Any]:
    """Merge query string and body: slack_sdk sends `params=` methods as a query on a POST."""
    args: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                args.update(body)
        else:  # x-www-form-urlencoded or multipart
            for key, value in (await request.post()).items():
                if isinstance(value, web.FileField):
                    args[key] = value.file.read()
                else:
                    args[key] = value if isinstance(value, str) else bytes(value)
    return _decode_json_args(args)


def _check_blocks(blocks: Any) -> None:
    """The message limits a bot is likeliest to hit (see the shared slack-platform notes)."""
    if blocks is None:
        return
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise SlackError("invalid_blocks_format")
    if len(blocks) > MAX_BLOCKS:
        raise SlackError("invalid_blocks")
    markdown_total = 0
    for block in blocks:
        if block.get("type") == "section":
            text = block.get("text") or {}
            if len(text.get("text", "")) > MAX_SECTION_TEXT:
                raise SlackError("invalid_blocks")
        elif block.get("type") == "markdown":
            markdown_total += len(block.get("text", ""))
    if markdown_total > MAX_MARKDOWN_TOTAL:
        raise SlackError("msg_blocks_too_long")


def _check_message(args: dict[str, Any]) -> None:
    if not args.get("channel"):
        raise SlackError("channel_not_found")
    text = args.get("text")
    if text is not None and len(str(text)) > MAX_TEXT:
        raise SlackError("msg_too_long")
    _check_blocks(args.get("blocks"))


# ---- stricter Block Kit limits (opt in with `FakeSlack.strict = True`) -------------------------
# Field limits from Slack's Block Kit reference, for the fields this bot fills. Off by default so
# existing tests see the fake exactly as before; a test that proves a rendering fits turns it on.
MAX_VIEW_BLOCKS = 100
MAX_VIEW_TITLE = 24
_TEXT_LIMITS = {
    "section": 3000,
    "header": 150,
    "context": 3000,
    "button": 75,
    "option": 75,
    "label": 2000,
    "hint": 2000,
    "placeholder": 150,
}


def _text_of(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, dict) else ""


def block_kit_problems(blocks: Any, *, max_blocks: int = MAX_BLOCKS) -> list[str]:
    """Every limit `blocks` breaks (empty when Slack would take them)."""
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        return ["blocks is not a list of objects"]
    problems: list[str] = []
    if len(blocks) > max_blocks:
        problems.append(f"{len(blocks)} blocks > {max_blocks}")

    def over(where: str, text: str, limit: int) -> None:
        if len(text) > limit:
            problems.append(f"{where}: {len(text)} characters > {limit}")

    def element(where: str, e: Any) -> None:
        if not isinstance(e, dict):
            return
        if e.get("type") == "button":
            over(f"{where} button text", _text_of(e.get("text")), _TEXT_LIMITS["button"])
            over(f"{where} button value", str(e.get("value", "")), 2000)
        if "placeholder" in e:
            over(f"{where} placeholder", _text_of(e["placeholder"]), _TEXT_LIMITS["placeholder"])
        if e.get("type") == "plain_text_input":
            limit = int(e.get("max_length", 3000))
            if limit > 3000:
                problems.append(f"{where} max_length {limit} > 3000")
            over(f"{where} initial_value", str(e.get("initial_value", "")), min(limit, 3000))
        for option in [*(e.get("options") or []), *(e.get("initial_options") or [])]:
            if isinstance(option, dict):
                over(f"{where} option text", _text_of(option.get("text")), 75)
                over(f"{where} option value", str(option.get("value", "")), 150)

    markdown_total = 0
    for i, block in enumerate(blocks):
        kind = block.get("type")
        where = f"block {i} ({kind})"
        if kind == "section":
            over(where, _text_of(block.get("text")), _TEXT_LIMITS["section"])
            element(where, block.get("accessory"))
        elif kind == "header":
            over(where, _text_of(block.get("text")), _TEXT_LIMITS["header"])
        elif kind == "context":
            for e in block.get("elements") or []:
                over(where, _text_of(e), _TEXT_LIMITS["context"])
        elif kind == "actions":
            for e in block.get("elements") or []:
                element(where, e)
        elif kind == "context_actions":
            elements = block.get("elements") or []
            if len(elements) > MAX_CONTEXT_ACTIONS:
                problems.append(f"{where}: {len(elements)} elements > {MAX_CONTEXT_ACTIONS}")
            for e in elements:
                if not isinstance(e, dict) or e.get("type") != "feedback_buttons":
                    continue
                for side in ("positive_button", "negative_button"):
                    b = e.get(side)
                    if not isinstance(b, dict):
                        problems.append(f"{where}: feedback_buttons without {side}")
                        continue
                    over(f"{where} {side} text", _text_of(b.get("text")), 75)
                    over(f"{where} {side} value", str(b.get("value", "")), 2000)
        elif kind == "input":
            over(f"{where} label", _text_of(block.get("label")), _TEXT_LIMITS["label"])
            over(f"{where} hint", _text_of(block.get("hint")), _TEXT_LIMITS["hint"])
            element(where, block.get("element"))
        elif kind == "markdown":
            markdown_total += len(str(block.get("text", "")))
    if markdown_total > MAX_MARKDOWN_TOTAL:
        problems.append(f"markdown blocks: {markdown_total} characters > {MAX_MARKDOWN_TOTAL}")
    return problems


def view_problems(view: Any) -> list[str]:
    """Every limit a modal or Home tab view breaks (empty when Slack would take it)."""
    if not isinstance(view, dict):
        return ["view is not an object"]
    problems = block_kit_problems(view.get("blocks") or [], max_blocks=MAX_VIEW_BLOCKS)
    for key in ("title", "submit", "close"):
        if key in view and len(_text_of(view[key])) > MAX_VIEW_TITLE:
            problems.append(f"view {key} longer than {MAX_VIEW_TITLE}")
    return problems


class FakeSlack:
    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        team_id: str = "T1",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        # What Slack lists in the X-OAuth-Scopes header of every answer to the bot token:
        # the scopes the installed app was granted (manifest.yml's, unless a test says less).
        self.scopes: list[str] = list(MANIFEST_BOT_SCOPES)

        self.calls: list[Call] = []
        self.uploads: dict[str, UploadedFile] = {}
        # ts -> {"channel", "ts", "text", "blocks", "thread_ts", "user", "bot_id"}: what a user
        # sees now. Tests may insert user messages here so conversations.replies returns them.
        self.messages: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = _default_users(team_id)
        self.reactions: set[tuple[str, str, str]] = set()  # (channel, ts, name)
        self.views: dict[str, dict[str, Any]] = {}  # view id -> latest view
        self.responses: list[ResponsePost] = []  # response_url posts, accepted or not
        self.hosted_files: dict[str, bytes] = {}  # file id -> bytes served at url_private
        self.file_downloads: list[tuple[str, str | None]] = []  # (file id, token presented)
        # OAuth (multi-workspace mode): the app's credentials, the installs waiting for the
        # user's consent (the next ones /oauth/v2/authorize grants; without one, a new
        # workspace each time), codes handed out, and the bot token of each install.
        self.client_id = "111.222"
        self.client_secret = "client-secret"
        self.redirect_uri = ""  # where /oauth/v2/authorize sends the user back
        self.token_rotation = False
        self.token_lifetime = 43_200  # seconds, as Slack's rotating tokens
        self.next_installs: list[Workspace] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.codes: dict[str, Workspace] = {}
        self.installed: dict[str, Workspace] = {}  # bot token -> its workspace
        self._refresh: dict[str, Workspace] = {}  # refresh token -> its workspace
        self._installs = itertools.count(1)
        # (channel, thread_ts) -> what the AI-app surface shows for that thread now.
        self.thread_status: dict[tuple[str, str], tuple[str, list[str]]] = {}
        self.thread_titles: dict[tuple[str, str], str] = {}
        self.suggested_prompts: dict[tuple[str, str], dict[str, Any]] = {}
        self.sessions: dict[tuple[str, str], str] = {}  # agent session status
        self.canvases: dict[str, dict[str, Any]] = {}  # canvas id -> title, markdown, channel
        # A free workspace: canvases only with a channel_id (tabbed in that channel).
        self.free_plan = False
        # Channels the bot has not joined: posting there answers not_in_channel.
        self.outside_channels: set[str] = set()
        # Chat streaming as seen in practice: a stream expires about five minutes after it
        # started and a message takes about 11 KB of streamed text.
        self.stream_seconds = 300.0
        self.stream_max_bytes = 11_000
        self.streams: dict[str, list[str]] = {}  # ts -> the markdown_text pieces, in order
        self.streaming = True  # False: a workspace where chat.startStream is not offered

        self.port = 0
        self.api_url = ""
        # True: messages and views are also held to block_kit_problems / view_problems, and a
        # breach is refused as Slack does (invalid_blocks; invalid_arguments for views).
        self.strict = False
        self._response_faults: dict[str, list[str]] = {}  # response_url name -> errors to answer
        self._faults: dict[str, _Fault] = {}
        self._holds: dict[str, Hold] = {}
        self._all_holds: list[Hold] = []
        self._pending_uploads: dict[str, _PendingUpload] = {}
        self._ids = itertools.count(1)
        self._sockets: list[web.WebSocketResponse] = []
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._calls_changed = asyncio.Condition()
        self._socket_connected = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "assistant.threads.setStatus": self._assistant_set_status,
            "assistant.threads.setSuggestedPrompts": self._assistant_set_suggested_prompts,
            "assistant.threads.setTitle": self._assistant_set_title,
            "agents.sessions.setStatus": self._agents_sessions_set_status,
            "canvases.create": self._canvases_create,
            "chat.startStream": self._chat_start_stream,
            "chat.appendStream": self._chat_append_stream,
            "chat.stopStream": self._chat_stop_stream,
            "files.info": self._files_info,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "views.open": self._views_open,
            "views.publish": self._views_publish,
            "views.update": self._views_update,
            "users.info": self._users_info,
            "conversations.replies": self._conversations_replies,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "apps.connections.open": self._apps_connections_open,
            "oauth.v2.access": lambda args: {},  # answered by _oauth_v2_access
        }

    # ---- files users attach ---------------------------------------------------------------

    def add_file(self, name: str, content: bytes, mimetype: str = "image/png") -> dict[str, Any]:
        """Host a file a user attached; returns the file object Slack puts in the event."""
        file_id = self._new_id("F")
        self.hosted_files[file_id] = content
        url = f"http://127.0.0.1:{self.port}/files-pri/{file_id}/{name}"
        return {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1],
            "size": len(content),
            "url_private": url,
            "url_private_download": url + "?download=1",
        }

    async def _handle_file_download(self, request: web.Request) -> web.Response:
        # Like files.slack.com: private files need the bot token; without it, an HTML page.
        file_id = request.match_info["file_id"]
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        self.file_downloads.append((file_id, token))
        if token != self.bot_token and token not in self.installed:
            return web.Response(status=302, headers={"Location": "https://slack.com/signin"})
        content = self.hosted_files.get(file_id)
        if content is None:
            return web.Response(status=404)
        return web.Response(body=content, content_type="application/octet-stream")

    # ---- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> FakeSlack:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/{file_id}", self._handle_upload)
        app.router.add_post("/response/{name}", self._handle_response)
        app.router.add_get("/socket", self._handle_socket)
        app.router.add_get("/files-pri/{file_id}/{name}", self._handle_file_download)
        app.router.add_get("/oauth/v2/authorize", self._handle_authorize)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.api_url = f"http://127.0.0.1:{self.port}/api/"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for hold in self._all_holds:
            hold.release()
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"fake slack shutting down")
        for fut in self._acks.values():
            fut.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- test API -----------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        *,
        count: int = 1,
        timeout: float = 10.0,
    ) -> list[Call]:
        """Wait until `count` calls to `method` (matching `predicate`) arrived; return them all.

        Failed calls (fault injection, invalid_auth, ...) count too: filter on `c.error is None`.
        """

        def matching() -> list[Call]:
            return [c for c in self.calls_to(method) if predicate is None or predicate(c)]

        try:
            async with asyncio.timeout(timeout), self._calls_changed:
                await self._calls_changed.wait_for(lambda: len(matching()) >= count)
        except TimeoutError:
            seen = [c.method for c in self.calls]
            raise AssertionError(
                f"{count} call(s) to {method} not seen within {timeout}s "
                f"({len(matching())} matched); calls seen: {seen}"
            ) from None
        return matching()

    def response_url(self, name: str | None = None) -> str:
        """A response_url for a slash command or action payload, served by this fake."""
        return f"http://127.0.0.1:{self.port}/response/{name or uuid.uuid4().hex}"

    def responses_to(self, url_or_name: str) -> list[ResponsePost]:
        name = url_or_name.rsplit("/", 1)[-1]
        return [r for r in self.responses if r.name == name]

    async def wait_for_responses(
        self,
        url_or_name: str,
        count: int = 1,
        predicate: Callable[[ResponsePost], bool] | None = None,
        *,
        timeout: float = 10.0,
    ) -> list[ResponsePost]:
        """Wait until `count` posts (matching `predicate`) reached the response URL."""

        def matching() -> list[ResponsePost]:
            return [r for r in self.responses_to(url_or_name) if predicate is None or predicate(r)]

        try:
            async with asyncio.timeout(timeout), self._calls_changed:
                await self._calls_changed.wait_for(lambda: len(matching()) >= count)
        except TimeoutError:
            raise AssertionError(
                f"{count} response_url post(s) not seen within {timeout}s "
                f"({len(matching())} matched of {len(self.responses_to(url_or_name))})"
            ) from None
        return matching()

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        error: str = "ratelimited",
        retry_after: int = 0,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls to `method` with `status` and {"ok": false, error}."""
        self._faults[method] = _Fault(status, error, retry_after, times)

    def hold_next(self, method: str) -> Hold:
        """Keep the next call to `method` unanswered until the hold is released (a process
        can be killed while it waits)."""
        hold = Hold()
        self._holds[method] = hold
        self._all_holds.append(hold)
        return hold

    def refuse_responses(
        self, url_or_name: str, error: str = "invalid_blocks", *, times: int = 1
    ) -> None:
        """Refuse the next `times` posts to this response URL with HTTP 400 and `error`."""
        name = url_or_name.rsplit("/", 1)[-1]
        self._response_faults.setdefault(name, []).extend([error] * times)

    async def socket_disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask every Socket Mode client to reconnect, as Slack does before it rotates a
        connection: a `disconnect` message on each open socket."""
        for ws in list(self._sockets):
            await ws.send_json({"type": "disconnect", "reason": reason, "debug_info": {}})

    def _check_strict(self, blocks: Any) -> None:
        if self.strict and blocks is not None and block_kit_problems(blocks):
            raise SlackError("invalid_blocks")

    def _check_strict_view(self, view: Any) -> None:
        if self.strict and view_problems(view):
            raise SlackError("invalid_arguments")

    async def wait_socket_connected(self, timeout: float = 10.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._socket_connected.wait()
        except TimeoutError:
            raise AssertionError(f"no Socket Mode connection within {timeout}s") from None

    async def socket_send(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """Deliver an envelope over Socket Mode; return the client's ack plus ack["_elapsed"].

        Raises TimeoutError when no ack arrives within `timeout` (what Slack would retry).
        """
        await self.wait_socket_connected(timeout)
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": envelope_type != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        ack: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = ack
        started = time.perf_counter()
        try:
            await self._sockets[-1].send_json(envelope)  # newest connection, as after a reconnect
            async with asyncio.timeout(timeout):
                result = await ack
        except TimeoutError:
            raise TimeoutError(
                f"no ack for {envelope_type} envelope {envelope_id} within {timeout}s"
            ) from None
        finally:
            self._acks.pop(envelope_id, None)
        result["_elapsed"] = time.perf_counter() - started
        return result

    # ---- HTTP handlers ------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await _read_args(request)
        # The sdk sends the token as a Bearer header; form callers may still put it in the body.
        auth = request.headers.get("Authorization", "")
        body_token = args.pop("token", None)
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else body_token
        if method == "oauth.v2.access" and auth.startswith("Basic "):
            token = auth  # the app's client credentials, not a token

        hold = self._holds.pop(method, None)
        if hold is not None:
            hold.reached.set()
            await hold.released.wait()
        status, headers = 200, {}
        fault = self._faults.get(method)
        if fault is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                del self._faults[method]
            status = fault.status
            if status == 429:
                headers["Retry-After"] = str(fault.retry_after)
            body: dict[str, Any] = {"ok": False, "error": fault.error}
        else:
            body = self._dispatch(method, args, token)

        if token == self.bot_token:
            headers["X-OAuth-Scopes"] = ",".join(self.scopes)
        self.calls.append(Call(method, args, token, None if body["ok"] else body["error"]))
        async with self._calls_changed:
            self._calls_changed.notify_all()
        return web.json_response(body, status=status, headers=headers)

    def _dispatch(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        handler = self._handlers.get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method", "req_method": method}
        if method == "oauth.v2.access":
            return self._oauth_v2_access(args, token)
        workspace = self.installed.get(token or "")
        if workspace is not None and method != "apps.connections.open":
            if workspace.expires_at is not None and workspace.expires_at < time.time():
                return {"ok": False, "error": "token_expired"}
            if method == "auth.test":
                return {"ok": True, **self._auth_test_of(workspace)}
        else:
            expected = self.app_token if method == "apps.connections.open" else self.bot_token
            if token != expected:
                return {"ok": False, "error": "invalid_auth"}
        try:
            return {"ok": True, **handler(args)}
        except SlackError as e:
            return {"ok": False, "error": e.error}

    async def _handle_response(self, request: web.Request) -> web.Response:
        """Like Slack's response_url: JSON message bodies, at most five uses per URL."""
        name = request.match_info["name"]
        try:
            body = await request.json()
        except json.JSONDecodeError:
            body = None
        error: str | None = None
        if not isinstance(body, dict):
            error, body = "invalid_payload", {}
        elif len(self.responses_to(name)) >= MAX_RESPONSE_USES:
            error = "used_url"
        elif self._response_faults.get(name):
            error = self._response_faults[name].pop(0)
        elif not any(body.get(k) for k in ("text", "blocks", "attachments", "delete_original")):
            error = "no_text"
        else:
            try:
                if len(str(body.get("text", ""))) > MAX_TEXT:
                    raise SlackError("msg_too_long")
                _check_blocks(_decode_json_args(dict(body)).get("blocks"))
                self._check_strict(_decode_json_args(dict(body)).get("blocks"))
            except SlackError as e:
                error = e.error
        self.responses.append(ResponsePost(name, body, error))
        async with self._calls_changed:
            self._calls_changed.notify_all()
        if error is not None:
            return web.json_response(
                {"ok": False, "error": error}, status=404 if error == "used_url" else 400
            )
        return web.Response(text="ok")

    async def _handle_upload(self, request: web.Request) -> web.Response:
        pending = self._pending_uploads.get(request.match_info["file_id"])
        if pending is None:
            return web.Response(status=404, text="file not found")
        # slack_sdk 3.47 POSTs the raw bytes (application/octet-stream); other clients use a
        # multipart form with a single file part, which Slack also accepts.
        if request.content_type.startswith("multipart/"):
            content = b""
            async for part in await request.multipart():
                if isinstance(part, BodyPartReader):
                    content = await part.read(decode=True)
                    break
        else:
            content = await request.read()
        pending.content = content
        return web.Response(text=f"OK - {len(content)}")

    async def _handle_socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, timeout=2.0)
        await ws.prepare(request)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "connection_info": {"app_id": "A1"},
                "debug_info": {},
            }
        )
        self._sockets.append(ws)
        self._socket_connected.set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                ack = json.loads(msg.data)
                fut = self._acks.get(ack.get("envelope_id", ""))
                if fut is not None and not fut.done():
                    fut.set_result(ack)
        finally:
            self._sockets.remove(ws)
            if not self._sockets:
                self._socket_connected.clear()
        return ws

    # ---- OAuth ------------------------------------------------------------------------------

    def install_next(
        self,
        team_id: str | None,
        *,
        enterprise_id: str | None = None,
        name: str = "",
        bot_user_id: str = "UBOT",
    ) -> Workspace:
        """The workspace (team_id None: the org `enterprise_id`, org-wide) the next consent on
        /oauth/v2/authorize installs into."""
        workspace = Workspace(team_id, enterprise_id, name or (team_id or enterprise_id or ""))
        workspace.bot_user_id = bot_user_id
        self.next_installs.append(workspace)
        return workspace

    def uninstall(self, workspace: Workspace) -> None:
        """Revoke the workspace's tokens, as Slack does before it sends app_uninstalled."""
        for token, held in list(self.installed.items()):
            if held is workspace:
                del self.installed[token]
        for token, held in list(self._refresh.items()):
            if held is workspace:
                del self._refresh[token]

    def token_of(self, team_id: str | None, enterprise_id: str | None = None) -> str:
        for token, workspace in self.installed.items():
            if workspace.team_id == team_id and workspace.enterprise_id == enterprise_id:
                return token
        raise KeyError(team_id or enterprise_id)

    def team_of_token(self, token: str | None) -> str | None:
        """The workspace (or org) a call's token belongs to."""
        workspace = self.installed.get(token or "")
        if workspace is None:
            return self.team_id if token == self.bot_token else None
        return workspace.team_id or workspace.enterprise_id

    async def _handle_authorize(self, request: web.Request) -> web.Response:
        """The user consents on Slack's page: back to the app's redirect URL with a code."""
        query = dict(request.query)
        self.authorize_requests.append(query)
        if query.get("client_id") != self.client_id:
            return web.Response(status=400, text="invalid client_id")
        redirect = query.get("redirect_uri") or self.redirect_uri
        if self.next_installs:
            workspace = self.next_installs.pop(0)
        else:
            n = next(self._installs)
            workspace = Workspace(f"TNEW{n:04d}", name=f"Workspace {n}")
        code = f"code-{uuid.uuid4().hex[:12]}"
        self.codes[code] = workspace
        state = query.get("state", "")
        return web.Response(
            status=302, headers={"Location": f"{redirect}?code={code}&state={state}"}
        )

    def _oauth_v2_access(self, args: dict[str, Any], basic: str | None) -> dict[str, Any]:
        # slack_sdk sends the client's credentials as HTTP Basic auth (see _handle_api).
        client_id = args.get("client_id")
        client_secret = args.get("client_secret")
        if basic is not None and basic.startswith("Basic "):
            client_id, _, client_secret = (
                base64.b64decode(basic.removeprefix("Basic ")).decode().partition(":")
            )
        if client_id != self.client_id or client_secret != self.client_secret:
            return {"ok": False, "error": "invalid_client_id"}
        if args.get("grant_type") == "refresh_token":
            workspace = self._refresh.pop(str(args.get("refresh_token")), None)
            if workspace is None:
                return {"ok": False, "error": "invalid_refresh_token"}
            self.installed.pop(workspace.token, None)  # the old token stops working
        else:
            workspace = self.codes.pop(str(args.get("code")), None)
            if workspace is None:
                return {"ok": False, "error": "invalid_code"}
        workspace.token = (
            f"xoxb-{workspace.team_id or workspace.enterprise_id}-{uuid.uuid4().hex[:8]}"
        )
        workspace.bot_id = f"B{(workspace.team_id or workspace.enterprise_id or '')[1:]}"
        self.installed[workspace.token] = workspace
        body: dict[str, Any] = {
            "ok": True,
            "access_token": workspace.token,
            "token_type": "bot",
            "scope": "app_mentions:read,chat:write,commands",
            "bot_user_id": workspace.bot_user_id,
            "app_id": "A1",
            "team": None
            if workspace.team_id is None
            else {"id": workspace.team_id, "name": workspace.name},
            "enterprise": None
            if workspace.enterprise_id is None
            else {"id": workspace.enterprise_id, "name": f"Org {workspace.enterprise_id}"},
            "is_enterprise_install": workspace.org_wide,
            "authed_user": {"id": "UADMIN"},
        }
        if self.token_rotation:
            workspace.refresh_token = f"xoxe-1-{uuid.uuid4().hex[:12]}"
            workspace.expires_at = time.time() + self.token_lifetime
            self._refresh[workspace.refresh_token] = workspace
            body["refresh_token"] = workspace.refresh_token
            body["expires_in"] = self.token_lifetime
        return body

    def _auth_test_of(self, workspace: Workspace) -> dict[str, Any]:
        return {
            "url": "https://test.slack.com/",
            "team": workspace.name,
            "user": "bot",
            "team_id": workspace.team_id,
            "enterprise_id": workspace.enterprise_id,
            "user_id": workspace.bot_user_id,
            "bot_id": workspace.bot_id,
            "is_enterprise_install": workspace.org_wide,
        }

    # ---- Web API methods (return the body minus "ok"; raise SlackError for errors) -------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08d}"

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://test.slack.com/",
            "team": "Test",
            "user": "bot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _check_member(self, channel: str) -> None:
        if channel in self.outside_channels:
            raise SlackError("not_in_channel")

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        _check_message(args)
        self._check_member(str(args["channel"]))
        self._check_strict(args.get("blocks"))
        if not any(args.get(k) for k in ("text", "blocks", "attachments", "markdown_text")):
            raise SlackError("no_text")
        ts = next_ts()
        msg = {
            "channel": args["channel"],
            "ts": ts,
            "text": args.get("text", args.get("markdown_text", "")),
            "blocks": args.get("blocks"),
            "thread_ts": args.get("thread_ts"),
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "metadata": args.get("metadata"),  # only in replies with include_all_metadata
        }
        self.messages[ts] = msg
        return {
            "channel": msg["channel"],
            "ts": ts,
            "message": {
                "type": "message",
                "text": msg["text"],
                "ts": ts,
                "thread_ts": msg["thread_ts"],
                "bot_id": self.bot_id,
                "user": self.bot_user_id,
                "blocks": msg["blocks"] or [],
            },
        }

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        _check_message(args)
        self._check_strict(args.get("blocks"))
        msg = self.messages.get(args.get("ts", ""))
        if msg is None or msg["channel"] != args["channel"]:
            raise SlackError("message_not_found")
        # Like Slack, fields left out keep their previous value.
        for key in ("text", "blocks"):
            if key in args:
                msg[key] = args[key]
        if "markdown_text" in args:
            msg["text"] = args["markdown_text"]
        return {"channel": msg["channel"], "ts": msg["ts"], "text": msg["text"]}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        _check_message(args)
        self._check_strict(args.get("blocks"))
        if not args.get("user"):
            raise SlackError("user_not_found")
        return {"message_ts": next_ts()}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = args.get("channel", ""), args.get("message_ts", "")
        if not channel or not ts:
            raise SlackError("invalid_arguments")
        return {
            "channel": channel,
            "permalink": f"https://test.slack.com/archives/{channel}/p{ts.replace('.', '')}",
        }

    def _assistant_set_status(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel_id") or not args.get("thread_ts") or "status" not in args:
            raise SlackError("invalid_arguments")
        loading = args.get("loading_messages") or []
        if (
            not isinstance(loading, list)
            or len(loading) > MAX_LOADING_MESSAGES
            or not all(isinstance(m, str) and m for m in loading)
        ):
            raise SlackError("invalid_arguments")
        key = (str(args["channel_id"]), str(args["thread_ts"]))
        self.thread_status[key] = (str(args["status"]), loading)
        return {}

    def _assistant_set_suggested_prompts(self, args: dict[str, Any]) -> dict[str, Any]:
        # JSON body; `thread_ts` and `title` optional, 1-4 prompts of {title, message}.
        prompts = args.get("prompts")
        if not args.get("channel_id") or not isinstance(prompts, list):
            raise SlackError("invalid_arguments")
        if not 0 < len(prompts) <= MAX_SUGGESTED_PROMPTS or not all(
            isinstance(p, dict) and p.get("title") and p.get("message") for p in prompts
        ):
            raise SlackError("invalid_arguments")
        key = (str(args["channel_id"]), str(args.get("thread_ts") or ""))
        self.suggested_prompts[key] = {"title": args.get("title"), "prompts": prompts}
        return {}

    def _assistant_set_title(self, args: dict[str, Any]) -> dict[str, Any]:
        # slack_sdk sends this one as a query string (params=), unlike its siblings.
        if not args.get("channel_id") or not args.get("thread_ts") or not args.get("title"):
            raise SlackError("invalid_arguments")
        self.thread_titles[(str(args["channel_id"]), str(args["thread_ts"]))] = str(args["title"])
        return {}

    def _agents_sessions_set_status(self, args: dict[str, Any]) -> dict[str, Any]:
        status, title = args.get("status"), args.get("title")
        if status not in SESSION_STATUSES or not args.get("channel_id"):
            raise SlackError("invalid_arguments")
        if not args.get("thread_ts"):
            raise SlackError("invalid_arguments")  # thread-based sessions need their thread
        if title is not None and len(str(title)) > MAX_SESSION_TITLE:
            raise SlackError("invalid_arguments")
        key = (str(args["channel_id"]), str(args["thread_ts"]))
        self.sessions[key] = str(status)
        return {"status": status}

    def _reaction_key(self, args: dict[str, Any]) -> tuple[str, str, str]:
        key = (args.get("channel", ""), args.get("timestamp", ""), args.get("name", ""))
        if not all(key):
            raise SlackError("invalid_arguments")
        return key

    def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        key = self._reaction_key(args)
        if key in self.reactions:
            raise SlackError("already_reacted")
        self.reactions.add(key)
        return {}

    def _reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        key = self._reaction_key(args)
        if key not in self.reactions:
            raise SlackError("no_reaction")
        self.reactions.discard(key)
        return {}

    def _store_view(self, view: Any, view_id: str | None = None) -> dict[str, Any]:
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments")
        view_id = view_id or self._new_id("V")
        stored = {**view, "id": view_id, "hash": uuid.uuid4().hex, "team_id": self.team_id}
        self.views[view_id] = stored
        return {"view": stored}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id"):
            raise SlackError("invalid_trigger_id")
        self._check_strict_view(args.get("view"))
        return self._store_view(args.get("view"))

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("user_id"):
            raise SlackError("invalid_arguments")
        self._check_strict_view(args.get("view"))
        return self._store_view(args.get("view"))

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        # Accept any id: tests often send view_submission payloads with made-up view ids.
        view_id = args.get("view_id") or args.get("external_id")
        if not view_id:
            raise SlackError("invalid_arguments")
        self._check_strict_view(args.get("view"))
        return self._store_view(args.get("view"), view_id)

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(args.get("user", ""))
        if user is None:
            raise SlackError("user_not_found")
        # Like Slack, `locale` only when asked for with include_locale.
        shown = {k: v for k, v in user.items() if k != "locale"}
        if _truthy(args.get("include_locale")):
            shown["locale"] = user.get("locale", "en-US")
        return {"user": shown}

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = args.get("channel", ""), args.get("ts", "")
        if not channel or not ts:
            raise SlackError("invalid_arguments")
        self._check_member(str(channel))
        thread = sorted(
            (
                m
                for m in self.messages.values()
                if m["channel"] == channel and (m["ts"] == ts or m.get("thread_ts") == ts)
            ),
            key=lambda m: m["ts"],
        )
        hidden = {"channel", "streaming", "stream_started"}
        if not _truthy(args.get("include_all_metadata")):
            hidden.add("metadata")
        messages = [
            {"type": "message", **{k: v for k, v in m.items() if v is not None and k not in hidden}}
            for m in thread
        ]
        return {"messages": messages, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _files_get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        filename, length = args.get("filename"), args.get("length")
        if not filename or length is None or not str(length).isdigit():
            raise SlackError("invalid_arguments")
        file_id = self._new_id("F")
        self._pending_uploads[file_id] = _PendingUpload(filename, int(length))
        return {"upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        files = args.get("files")
        if not isinstance(files, list) or not files:
            raise SlackError("invalid_arguments")
        # Validate every file before recording any, so a failed call has no side effects.
        for f in files:
            pending = self._pending_uploads.get(f.get("id", "")) if isinstance(f, dict) else None
            if pending is None or pending.content is None:
                raise SlackError("file_not_found")
        result = []
        for f in files:
            pending = self._pending_uploads.pop(f["id"])
            assert pending.content is not None
            self.uploads[f["id"]] = UploadedFile(
                file_id=f["id"],
                filename=pending.filename,
                length=pending.length,
                content=pending.content,
                title=f.get("title"),
                channel_id=args.get("channel_id"),
                thread_ts=args.get("thread_ts"),
                initial_comment=args.get("initial_comment"),
            )
            if args.get("channel_id"):
                # Like Slack: a file shared into a conversation is a message there.
                ts = next_ts()
                self.messages[ts] = {
                    "channel": args["channel_id"],
                    "ts": ts,
                    "text": args.get("initial_comment") or "",
                    "thread_ts": args.get("thread_ts"),
                    "user": self.bot_user_id,
                    "bot_id": self.bot_id,
                    "files": [{"id": f["id"], "name": pending.filename, "title": f.get("title")}],
                }
            result.append(
                {
                    "id": f["id"],
                    "title": f.get("title") or pending.filename,
                    "name": pending.filename,
                    "size": len(pending.content),
                    "permalink": f"https://test.slack.com/files/{self.bot_user_id}/{f['id']}",
                }
            )
        return {"files": result}

    def _chat_start_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, thread_ts = str(args.get("channel") or ""), args.get("thread_ts")
        if not channel or not thread_ts:
            raise SlackError("invalid_arguments")
        if args.get("markdown_text") and args.get("chunks"):
            raise SlackError("invalid_arguments")  # one or the other per request
        if not channel.startswith("D"):  # outside DMs, the stream needs its recipient
            if not args.get("recipient_team_id"):
                raise SlackError("missing_recipient_team_id")
            if not args.get("recipient_user_id"):
                raise SlackError("missing_recipient_user_id")
        self._check_member(channel)
        if not self.streaming:
            raise SlackError("feature_not_enabled")
        text = str(args.get("markdown_text") or "")
        if len(text.encode()) > self.stream_max_bytes:
            raise SlackError("msg_too_long")
        ts = next_ts()
        self.messages[ts] = {
            "channel": channel,
            "ts": ts,
            "text": text,
            "blocks": None,
            "thread_ts": thread_ts,
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "streaming": True,
            "stream_started": time.monotonic(),
        }
        self.streams[ts] = [text] if text else []
        return {"channel": channel, "ts": ts}

    def _streaming(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.messages.get(str(args.get("ts") or ""))
        if msg is None or msg["channel"] != args.get("channel"):
            raise SlackError("message_not_found")
        expired = time.monotonic() - msg.get("stream_started", 0.0) > self.stream_seconds
        if not msg.get("streaming") or expired:
            msg["streaming"] = False
            raise SlackError("message_not_in_streaming_state")
        return msg

    def _stream_append(self, msg: dict[str, Any], args: dict[str, Any]) -> None:
        text = str(args.get("markdown_text") or "")
        if len((msg["text"] + text).encode()) > self.stream_max_bytes:
            raise SlackError("msg_too_long")
        if text:
            msg["text"] += text
            self.streams[msg["ts"]].append(text)

    def _chat_append_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self._streaming(args)
        if not args.get("markdown_text") and not args.get("chunks"):
            raise SlackError("no_text")
        self._stream_append(msg, args)
        return {"channel": msg["channel"], "ts": msg["ts"]}

    def _chat_stop_stream(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self._streaming(args)
        _check_blocks(args.get("blocks"))
        self._check_strict(args.get("blocks"))
        self._stream_append(msg, args)
        msg["streaming"] = False
        if args.get("blocks"):
            msg["blocks"] = args["blocks"]
        return {"channel": msg["channel"], "ts": msg["ts"], "message": {"text": msg["text"]}}

    def _canvases_create(self, args: dict[str, Any]) -> dict[str, Any]:
        # JSON body: title, document_content {type: "markdown", markdown}, channel_id.
        content = args.get("document_content")
        if content is not None and (
            not isinstance(content, dict)
            or content.get("type") != "markdown"
            or not isinstance(content.get("markdown"), str)
        ):
            raise SlackError("invalid_arguments")
        markdown = content["markdown"] if content else ""
        if len(markdown.encode()) > MAX_CANVAS_BYTES:
            raise SlackError("canvas_creation_failed")
        if self.free_plan and not args.get("channel_id"):
            raise SlackError("free_teams_cannot_create_non_tabbed_canvases")
        canvas_id = self._new_id("F")
        self.canvases[canvas_id] = {
            "title": args.get("title"),
            "markdown": markdown,
            "channel_id": args.get("channel_id"),
        }
        return {"canvas_id": canvas_id}

    def _files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        file_id = str(args.get("file") or "")
        canvas = self.canvases.get(file_id)
        if canvas is not None:
            return {
                "file": {
                    "id": file_id,
                    "title": canvas["title"] or "Untitled",
                    "mimetype": "application/vnd.slack-docs",
                    "filetype": "quip",
                    "pretty_type": "Canvas",
                    "permalink": f"https://test.slack.com/docs/{self.team_id}/{file_id}",
                }
            }
        upload = self.uploads.get(file_id)
        if upload is None:
            raise SlackError("file_not_found")
        return {
            "file": {
                "id": file_id,
                "name": upload.filename,
                "title": upload.title or upload.filename,
                "size": len(upload.content),
                "permalink": f"https://test.slack.com/files/{self.bot_user_id}/{file_id}",
            }
        }

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://127.0.0.1:{self.port}/socket"}


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true")
