"""Builders for what Slack sends to an app: Events API envelopes, slash commands, block actions.

Shapes follow Slack's documented payloads (docs.slack.dev: Events API, slash commands,
block_actions). Only the fields a bot can reasonably read are filled in; override anything by
editing the returned dict.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp

_event_ids = itertools.count(1)
_trigger_ids = itertools.count(1)
_last_ts_us = 0


def next_ts() -> str:
    """A Slack-style message timestamp ("1712345678.123456"), strictly increasing per process.

    Based on the wall clock (bots may compare a ts with "now") and shared with FakeSlack, so user
    messages built here and bot messages posted to the fake interleave in true order.
    Integer microseconds because a float cannot hold 16 significant digits exactly.
    """
    global _last_ts_us
    _last_ts_us = max(time.time_ns() // 1000, _last_ts_us + 1)
    return f"{_last_ts_us // 1_000_000}.{_last_ts_us % 1_000_000:06d}"


def _trigger_id() -> str:
    return f"{next(_trigger_ids)}.{int(time.time())}.{uuid.uuid4().hex[:16]}"


def event_callback(
    event: dict[str, Any],
    *,
    team_id: str = "T1",
    event_id: str | None = None,
    api_app_id: str = "A1",
) -> dict[str, Any]:
    """The outer Events API envelope (HTTP body, or the Socket Mode `payload`)."""
    return {
        "token": "verification-token",
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_event_ids):08d}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": "UBOT",
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{uuid.uuid4().hex}",
    }


def app_mention(
    text: str,
    *,
    user: str = "UUSER",
    channel: str = "C1",
    ts: str | None = None,
    thread_ts: str | None = None,
    files: list[dict[str, Any]] | None = None,
    team: str = "T1",
) -> dict[str, Any]:
    """An `app_mention` event. `text` is used verbatim: include "<@UBOT>" yourself."""
    ts = ts or next_ts()
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "team": team,
        "client_msg_id": str(uuid.uuid4()),
    }
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    if files is not None:
        event["files"] = files
    return event


def message(
    text: str,
    *,
    user: str = "UUSER",
    channel: str = "C1",
    ts: str | None = None,
    thread_ts: str | None = None,
    channel_type: str = "channel",
    subtype: str | None = None,
    bot_id: str | None = None,
    files: list[dict[str, Any]] | None = None,
    team: str = "T1",
) -> dict[str, Any]:
    """A `message` event (channel_type "channel", "group", "im" or "mpim").

    `message_changed` / `message_deleted` get Slack's nested shape: the (new) message sits under
    `message` / `previous_message` and the outer event has no `user` or `text`, which is exactly
    what trips bots that read `event["user"]` unguarded.
    """
    ts = ts or next_ts()
    inner: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts, "team": team}
    if thread_ts is not None:
        inner["thread_ts"] = thread_ts
    if bot_id is not None:
        inner["bot_id"] = bot_id
    if files is not None:
        inner["files"] = files

    if subtype in ("message_changed", "message_deleted"):
        event_ts = next_ts()
        event: dict[str, Any] = {
            "type": "message",
            "subtype": subtype,
            "hidden": True,
            "channel": channel,
            "channel_type": channel_type,
            "ts": event_ts,
            "event_ts": event_ts,
            "previous_message": inner,
        }
        if subtype == "message_changed":
            event["message"] = {**inner, "edited": {"user": user, "ts": event_ts}}
        else:
            event["deleted_ts"] = ts
        return event

    event = {**inner, "channel": channel, "channel_type": channel_type, "event_ts": ts}
    if subtype is not None:
        event["subtype"] = subtype
    elif bot_id is None:
        event["client_msg_id"] = str(uuid.uuid4())  # only human-typed messages carry one
    return event


def slash_command(
    command: str,
    text: str,
    *,
    user_id: str = "UUSER",
    channel_id: str = "C1",
    team_id: str = "T1",
    response_url: str = "https://hooks.slack.com/commands/T1/1/fake",
    trigger_id: str | None = None,
) -> dict[str, str]:
    """Slash command form fields (HTTP body form-encoded, Socket Mode `payload` as is)."""
    return {
        "token": "verification-token",
        "team_id": team_id,
        "team_domain": "test",
        "channel_id": channel_id,
        "channel_name": "general",
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A1",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or _trigger_id(),
    }


def block_action(
    action_id: str,
    value: str,
    *,
    user_id: str = "UUSER",
    channel_id: str = "C1",
    message_ts: str | None = None,
    thread_ts: str | None = None,
    team_id: str = "T1",
    trigger_id: str | None = None,
    block_id: str = "actions",
) -> dict[str, Any]:
    """A `block_actions` payload for a button click on a bot message."""
    message_ts = message_ts or next_ts()
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel_id,
        "is_ephemeral": False,
    }
    msg: dict[str, Any] = {
        "type": "message",
        "ts": message_ts,
        "text": "",
        "user": "UBOT",
        "bot_id": "BBOT",
    }
    if thread_ts is not None:
        container["thread_ts"] = thread_ts
        msg["thread_ts"] = thread_ts
    return {
        "type": "block_actions",
        "user": {
            "id": user_id,
            "username": user_id.lower(),
            "name": user_id.lower(),
            "team_id": team_id,
        },
        "api_app_id": "A1",
        "token": "verification-token",
        "container": container,
        "trigger_id": trigger_id or _trigger_id(),
        "team": {"id": team_id, "domain": "test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": "general"},
        "message": msg,
        "state": {"values": {}},
        "response_url": f"https://hooks.slack.com/actions/{team_id}/1/fake",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": action_id, "emoji": True},
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def signed_headers(
    signing_secret: str,
    body: str,
    *,
    timestamp: int | None = None,
    content_type: str = "application/json",
) -> dict[str, str]:
    """Slack's v0 request signature: HMAC-SHA256 of "v0:{timestamp}:{body}"."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(
        signing_secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256
    ).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": content_type,
    }


async def post_signed(
    session: aiohttp.ClientSession,
    url: str,
    signing_secret: str,
    payload: dict[str, Any],
    *,
    kind: Literal["event", "command", "interactive"] = "event",
    retry_num: int | None = None,
    bad_signature: bool = False,
) -> tuple[int, str, float]:
    """POST a signed request the way Slack does in HTTP mode; returns (status, body, seconds)."""
    if kind == "event":
        body, content_type = json.dumps(payload), "application/json"
    elif kind == "command":
        body, content_type = urlencode(payload), "application/x-www-form-urlencoded"
    else:
        body = urlencode({"payload": json.dumps(payload)})
        content_type = "application/x-www-form-urlencoded"
    # A wrong secret gives a well-formed but invalid signature, as an attacker would send.
    secret = signing_secret + "-wrong" if bad_signature else signing_secret
    headers = signed_headers(secret, body, content_type=content_type)
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    started = time.perf_counter()
    async with session.post(url, data=body.encode(), headers=headers) as resp:
        text = await resp.text()
    return resp.status, text, time.perf_counter() - started


def modal_state(
    view: dict[str, Any], changes: dict[str, Any] | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """`view.state.values` as Slack submits a modal: every input block's initial value, with
    `changes` (block_id -> what the user typed or picked) applied.

    A change is a string for a text input, an option value for a select or radio buttons, and
    a list of option values for checkboxes. Empty text inputs submit `None`, like Slack.
    """
    changes = dict(changes or {})
    values: dict[str, dict[str, Any]] = {}
    for block in view.get("blocks", []):
        if block.get("type") != "input":
            continue
        block_id, element = block["block_id"], block["element"]
        kind = element["type"]
        change = changes.pop(block_id, None)
        state: dict[str, Any] = {"type": kind}
        if kind == "plain_text_input":
            text = element.get("initial_value") if change is None else change
            state["value"] = text or None
        elif kind in ("static_select", "radio_buttons"):
            option = element.get("initial_option")
            if change is not None:
                [option] = [o for o in element["options"] if o["value"] == change]
            state["selected_option"] = option
        elif kind == "checkboxes":
            chosen = element.get("initial_options") or []
            if change is not None:
                chosen = [o for o in element["options"] if o["value"] in change]
            state["selected_options"] = chosen
        else:
            raise ValueError(f"modal_state does not know {kind} elements")
        values[block_id] = {element["action_id"]: state}
    if changes:
        raise ValueError(f"no input blocks named {sorted(changes)} in the view")
    return values


def view_submission(
    view: dict[str, Any],
    values: dict[str, dict[str, Any]],
    *,
    user_id: str = "UUSER",
    team_id: str = "T1",
    view_id: str | None = None,
) -> dict[str, Any]:
    """A `view_submission` payload for a modal the app opened (`view` as passed to views.open)."""
    submitted = {
        **view,
        "id": view_id or view.get("id") or f"V{uuid.uuid4().hex[:10].upper()}",
        "team_id": team_id,
        "app_id": "A1",
        "bot_id": "BBOT",
        "private_metadata": view.get("private_metadata", ""),
        "hash": uuid.uuid4().hex,
        "state": {"values": values},
    }
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "test"},
        "user": {
            "id": user_id,
            "username": user_id.lower(),
            "name": user_id.lower(),
            "team_id": team_id,
        },
        "api_app_id": "A1",
        "token": "verification-token",
        "trigger_id": _trigger_id(),
        "view": submitted,
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def home_block_action(
    action_id: str, value: str, *, user_id: str = "UUSER", team_id: str = "T1"
) -> dict[str, Any]:
    """A `block_actions` payload for a button on the App Home tab (a view, not a message)."""
    payload = block_action(action_id, value, user_id=user_id, team_id=team_id)
    view_id = f"V{uuid.uuid4().hex[:10].upper()}"
    payload["container"] = {"type": "view", "view_id": view_id}
    payload["view"] = {"id": view_id, "type": "home", "team_id": team_id, "blocks": []}
    for key in ("message", "channel"):
        del payload[key]
    payload.pop("response_url", None)
    return payload


def assistant_thread_started(
    *, user: str = "UUSER", channel: str = "D1", thread_ts: str | None = None, team: str = "T1"
) -> dict[str, Any]:
    """`assistant_thread_started`: a user opened a thread in the app's assistant view (the
    thread lives in the app's DM; `context` names the channel the user was looking at)."""
    ts = next_ts()
    return {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": user,
            "context": {"channel_id": "C1", "team_id": team, "enterprise_id": None},
            "channel_id": channel,
            "thread_ts": thread_ts or ts,
        },
        "event_ts": ts,
    }


def agent_session_stopped(
    *,
    channel: str,
    thread_ts: str,
    user: str = "UUSER",
    streaming_message_ts: list[str] | None = None,
) -> dict[str, Any]:
    """`agent_session_stopped`: Slack's own Stop on a session in `processing`. Slack has
    already stopped the streams it lists (an empty list when none was streaming); the team is
    on the enclosing event_callback only."""
    return {
        "type": "agent_session_stopped",
        "channel": channel,
        "thread_ts": thread_ts,
        "user": user,
        "streaming_message_ts": streaming_message_ts or [],
        "event_ts": next_ts(),
    }


def feedback_press(
    message: dict[str, Any], *, positive: bool, user_id: str = "UUSER", team_id: str = "T1"
) -> dict[str, Any]:
    """A press of a `feedback_buttons` element in a posted message (as the fake stored it):
    a `block_actions` whose action is the feedback_buttons element with the pressed button's
    value, the container naming the message."""
    for block in message.get("blocks") or []:
        if block.get("type") != "context_actions":
            continue
        for element in block.get("elements") or []:
            if element.get("type") == "feedback_buttons":
                button = element["positive_button" if positive else "negative_button"]
                payload = block_action(
                    element["action_id"],
                    button["value"],
                    user_id=user_id,
                    channel_id=str(message.get("channel") or "C1"),
                    message_ts=str(message["ts"]),
                    thread_ts=message.get("thread_ts"),
                    team_id=team_id,
                    block_id=str(block.get("block_id") or "feedback"),
                )
                payload["actions"][0]["type"] = "feedback_buttons"
                payload["actions"][0].pop("text")
                return payload
    raise ValueError("the message has no feedback buttons")


def message_shortcut(
    callback_id: str,
    message: dict[str, Any],
    *,
    user_id: str = "UUSER",
    channel_id: str = "C1",
    team_id: str = "T1",
) -> dict[str, Any]:
    """A `message_action` payload: someone used a message shortcut on `message`."""
    return {
        "type": "message_action",
        "token": "verification-token",
        "action_ts": f"{time.time():.6f}",
        "team": {"id": team_id, "domain": "test"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": team_id},
        "channel": {"id": channel_id, "name": "general"},
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": _trigger_id(),
        "response_url": f"https://hooks.slack.com/app/{team_id}/1/fake",
        "message_ts": message["ts"],
        "message": {"type": "message", **message},
    }
