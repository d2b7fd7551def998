"""Self-tests: the real slack_sdk / slack_bolt clients must work unchanged against FakeSlack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes import slack_payloads as sp
from tests.fakes.slack_server import FakeSlack

SIGNING_SECRET = "test-signing-secret"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> AsyncWebClient:
    # No session passed: slack_sdk opens and closes one per request, so nothing leaks.
    return AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)


async def test_post_and_update_message(slack: FakeSlack, client: AsyncWebClient) -> None:
    first = await client.chat_postMessage(channel="C1", text="working…", thread_ts="111.000001")
    second = await client.chat_postMessage(channel="C1", text="other")
    assert first["message"]["user"] == "UBOT" and first["message"]["bot_id"] == "BBOT"
    assert first["message"]["thread_ts"] == "111.000001"
    assert float(second["ts"]) > float(first["ts"])

    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*done*"}}]
    updated = await client.chat_update(channel="C1", ts=first["ts"], text="done", blocks=blocks)
    assert updated["text"] == "done"

    seen = slack.messages[first["ts"]]
    assert seen["text"] == "done" and seen["blocks"] == blocks
    assert seen["thread_ts"] == "111.000001" and seen["channel"] == "C1"
    [call] = await slack.wait_for_call("chat.update")
    assert call.token == "xoxb-test" and call.args["blocks"] == blocks

    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C1", ts="1.000000", text="x")
    assert err.value.response["error"] == "message_not_found"


async def test_form_encoded_args_and_limits(slack: FakeSlack, client: AsyncWebClient) -> None:
    # Bolt-era callers send form bodies with blocks as a JSON string: decoded to a list.
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    await client.api_call(
        "chat.postMessage", data={"channel": "C1", "text": "hi", "blocks": json.dumps(blocks)}
    )
    assert slack.calls_to("chat.postMessage")[0].args["blocks"] == blocks

    with pytest.raises(SlackApiError, match="msg_too_long"):
        await client.chat_postMessage(channel="C1", text="x" * 40_001)
    many = [{"type": "divider"}] * 51
    with pytest.raises(SlackApiError, match="invalid_blocks"):
        await client.chat_postMessage(channel="C1", text="x", blocks=many)
    assert [c.error for c in slack.calls_to("chat.postMessage")] == [
        None,
        "msg_too_long",
        "invalid_blocks",
    ]


async def test_files_upload_v2(slack: FakeSlack, client: AsyncWebClient) -> None:
    resp = await client.files_upload_v2(
        channel="C1",
        thread_ts="111.000001",
        content="# hi",
        filename="r.md",
        title="Report",
        initial_comment="here",
    )
    file_id = resp["file"]["id"]
    upload = slack.uploads[file_id]
    assert upload.content == b"# hi" and upload.length == 4
    assert (upload.filename, upload.title) == ("r.md", "Report")
    assert (upload.channel_id, upload.thread_ts, upload.initial_comment) == (
        "C1",
        "111.000001",
        "here",
    )

    # Other clients POST a multipart form to the upload URL; that is accepted too.
    url = await client.files_getUploadURLExternal(filename="m.bin", length=3)
    form = aiohttp.FormData()
    form.add_field("file", b"\x00\x01\x02", filename="m.bin")
    async with aiohttp.ClientSession() as session, session.post(url["upload_url"], data=form) as r:
        assert (r.status, await r.text()) == (200, "OK - 3")
    await client.files_completeUploadExternal(files=[{"id": url["file_id"]}], channel_id="C1")
    assert slack.uploads[url["file_id"]].content == b"\x00\x01\x02"

    # Completing a file whose bytes never arrived is an error, as on Slack.
    url = await client.files_getUploadURLExternal(filename="x.md", length=3)
    with pytest.raises(SlackApiError, match="file_not_found"):
        await client.files_completeUploadExternal(files=[{"id": url["file_id"]}])


async def test_rate_limit_retry(slack: FakeSlack) -> None:
    client = AsyncWebClient(
        token=slack.bot_token,
        base_url=slack.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )
    posted = await client.chat_postMessage(channel="C1", text="a")
    slack.fail_next("chat.update", status=429, retry_after=0)
    await client.chat_update(channel="C1", ts=posted["ts"], text="b")
    assert [c.error for c in slack.calls_to("chat.update")] == ["ratelimited", None]
    assert slack.messages[posted["ts"]]["text"] == "b"


async def test_fault_without_retry_handler(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.fail_next("chat.postMessage", status=500, error="internal_error", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            await client.chat_postMessage(channel="C1", text="a")
        assert err.value.response.status_code == 500
    await client.chat_postMessage(channel="C1", text="a")


async def test_invalid_auth(slack: FakeSlack) -> None:
    bad = AsyncWebClient(token="xoxb-wrong", base_url=slack.api_url)
    with pytest.raises(SlackApiError) as err:
        await bad.auth_test()
    assert err.value.response["error"] == "invalid_auth"
    # The bot token is not an app token.
    with pytest.raises(SlackApiError, match="invalid_auth"):
        await bad.apps_connections_open(app_token=slack.bot_token)


async def test_other_methods(slack: FakeSlack, client: AsyncWebClient) -> None:
    auth = await client.auth_test()
    assert (auth["user_id"], auth["bot_id"], auth["team_id"]) == ("UBOT", "BBOT", "T1")
    assert (await client.users_info(user="UADMIN"))["user"]["is_admin"] is True
    assert (await client.users_info(user="UUSER"))["user"]["is_admin"] is False
    with pytest.raises(SlackApiError, match="user_not_found"):
        await client.users_info(user="UNOBODY")

    root = await client.chat_postMessage(channel="C1", text="root")
    await client.chat_postMessage(channel="C1", text="reply", thread_ts=root["ts"])
    await client.chat_postMessage(channel="C2", text="elsewhere", thread_ts=root["ts"])
    replies = await client.conversations_replies(channel="C1", ts=root["ts"])
    assert [m["text"] for m in replies["messages"]] == ["root", "reply"]

    await client.reactions_add(channel="C1", timestamp=root["ts"], name="eyes")
    with pytest.raises(SlackApiError, match="already_reacted"):
        await client.reactions_add(channel="C1", timestamp=root["ts"], name="eyes")
    await client.reactions_remove(channel="C1", timestamp=root["ts"], name="eyes")
    await client.assistant_threads_setStatus(
        channel_id="C1", thread_ts=root["ts"], status="is thinking…"
    )
    view = {"type": "modal", "title": {"type": "plain_text", "text": "t"}, "blocks": []}
    opened = await client.views_open(trigger_id="1.2.abc", view=view)
    await client.views_update(view_id=opened["view"]["id"], view=view)
    await client.views_publish(user_id="UUSER", view={"type": "home", "blocks": []})
    await client.chat_postEphemeral(channel="C1", user="UUSER", text="psst")
    link = await client.chat_getPermalink(channel="C1", message_ts=root["ts"])
    assert link["permalink"].startswith("https://test.slack.com/archives/C1/p")

    with pytest.raises(SlackApiError, match="unknown_method"):
        await client.api_call("no.such.method")


async def test_wait_for_call_is_bounded(slack: FakeSlack, client: AsyncWebClient) -> None:
    await client.auth_test()
    with pytest.raises(AssertionError, match=r"calls seen: \['auth.test'\]"):
        await slack.wait_for_call("chat.postMessage", timeout=0.1)


async def test_socket_mode_round_trip(slack: FakeSlack) -> None:
    received: list[SocketModeRequest] = []

    async def listener(client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:
        received.append(req)
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    web_client = AsyncWebClient(base_url=slack.api_url)
    socket_client = SocketModeClient(app_token=slack.app_token, web_client=web_client)
    socket_client.socket_mode_request_listeners.append(listener)
    try:
        await socket_client.connect()
        await slack.wait_socket_connected()
        payload = sp.event_callback(sp.app_mention("<@UBOT> hi"))
        ack = await slack.socket_send("events_api", payload, retry_attempt=1)
        assert received[0].envelope_id == ack["envelope_id"]
        assert received[0].payload == payload and received[0].retry_attempt == 1
        assert 0 <= ack["_elapsed"] < 5
    finally:
        await socket_client.close()
    assert slack.calls_to("apps.connections.open")[0].token == "xapp-test"


async def test_socket_send_times_out_without_ack(slack: FakeSlack) -> None:
    socket_client = SocketModeClient(
        app_token=slack.app_token, web_client=AsyncWebClient(base_url=slack.api_url)
    )
    try:
        await socket_client.connect()
        with pytest.raises(TimeoutError, match="no ack"):
            await slack.socket_send("events_api", sp.event_callback({}), timeout=0.2)
    finally:
        await socket_client.close()


def _bolt_app(slack: FakeSlack, seen: list[dict[str, Any]]) -> AsyncApp:
    app = AsyncApp(
        client=AsyncWebClient(token=slack.bot_token, base_url=slack.api_url),
        signing_secret=SIGNING_SECRET,
    )

    @app.event("app_mention")
    async def on_mention(body: dict[str, Any], say: Any, request: Any) -> None:
        # Bolt's Socket Mode adapter mirrors retry_attempt into the HTTP-mode header.
        retry_num = request.headers.get("x-slack-retry-num", [None])[0]
        seen.append({"body": body, "retry_num": retry_num})
        await say(text="pong", thread_ts=body["event"]["ts"])

    @app.command("/research")
    async def on_command(ack: Any, command: dict[str, Any]) -> None:
        seen.append(command)
        await ack()

    @app.action("stop")
    async def on_action(ack: Any, body: dict[str, Any]) -> None:
        seen.append(body)
        await ack()

    return app


async def test_bolt_http_mode_with_signed_requests(slack: FakeSlack) -> None:
    seen: list[dict[str, Any]] = []
    runner = web.AppRunner(_bolt_app(slack, seen).web_app())
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
        async with aiohttp.ClientSession() as session:
            mention = sp.event_callback(sp.app_mention("<@UBOT> hi"))
            status, _, elapsed = await sp.post_signed(
                session, url, SIGNING_SECRET, mention, retry_num=1
            )
            assert status == 200 and elapsed < 3
            [reply] = await slack.wait_for_call("chat.postMessage")
            assert reply.args["thread_ts"] == mention["event"]["ts"]
            assert seen[0]["retry_num"] == "1"

            command = sp.slash_command("/research", "why is the sky blue")
            status, _, _ = await sp.post_signed(
                session, url, SIGNING_SECRET, command, kind="command"
            )
            assert status == 200
            action = sp.block_action("stop", "run-1", thread_ts="111.000001")
            status, _, _ = await sp.post_signed(
                session, url, SIGNING_SECRET, action, kind="interactive"
            )
            assert status == 200
            assert seen[1]["text"] == "why is the sky blue"
            assert seen[2]["actions"][0]["value"] == "run-1"

            status, _, _ = await sp.post_signed(
                session, url, SIGNING_SECRET, mention, bad_signature=True
            )
            assert status == 401
    finally:
        await runner.cleanup()


async def test_bolt_socket_mode_sees_retry_num(slack: FakeSlack) -> None:
    seen: list[dict[str, Any]] = []
    handler = AsyncSocketModeHandler(_bolt_app(slack, seen), app_token=slack.app_token)
    try:
        await handler.connect_async()
        payload = sp.event_callback(sp.app_mention("<@UBOT> hi"))
        ack = await slack.socket_send("events_api", payload, retry_attempt=2, retry_reason="x")
        assert "payload" not in ack
        await slack.wait_for_call("chat.postMessage")
        assert seen[0]["retry_num"] == "2"
    finally:
        await handler.close_async()


def test_payload_shapes() -> None:
    ts1, ts2 = sp.next_ts(), sp.next_ts()
    assert float(ts2) > float(ts1) and len(ts1.split(".")[1]) == 6
    changed = sp.message("edited", subtype="message_changed")
    assert "user" not in changed and changed["message"]["text"] == "edited"
    dm = sp.message("hi", channel="D1", channel_type="im")
    assert dm["event_ts"] == dm["ts"] and dm["channel_type"] == "im"
    env = sp.event_callback(dm)
    assert env["event_id"].startswith("Ev") and env["authorizations"][0]["user_id"] == "UBOT"
    headers = sp.signed_headers("s", "body", timestamp=1)
    assert headers["X-Slack-Signature"].startswith("v0=")


@pytest.mark.parametrize("times", [1, 3])
async def test_fail_next_times(slack: FakeSlack, client: AsyncWebClient, times: int) -> None:
    slack.fail_next("auth.test", status=200, error="team_not_found", times=times)
    for _ in range(times):
        with pytest.raises(SlackApiError, match="team_not_found"):
            await client.auth_test()
    await asyncio.wait_for(client.auth_test(), timeout=5)


# --------------------------------------------------------------------------- OAuth


async def consent(slack: FakeSlack) -> str:
    """A person consents on the fake's authorize page; the code it sends back."""
    slack.redirect_uri = "https://bot.example.com/slack/oauth_redirect"
    url = f"http://127.0.0.1:{slack.port}/oauth/v2/authorize"
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            url,
            params={"client_id": slack.client_id, "scope": "chat:write", "state": "s1"},
            allow_redirects=False,
        ) as response,
    ):
        assert response.status == 302
        location = response.headers["Location"]
    assert location.startswith(slack.redirect_uri) and "state=s1" in location
    return location.split("code=")[1].split("&")[0]


async def test_oauth_v2_access_gives_a_new_workspace_and_token_each_time(
    slack: FakeSlack,
) -> None:
    client = AsyncWebClient(base_url=slack.api_url)
    first = await client.oauth_v2_access(
        client_id=slack.client_id, client_secret=slack.client_secret, code=await consent(slack)
    )
    second = await client.oauth_v2_access(
        client_id=slack.client_id, client_secret=slack.client_secret, code=await consent(slack)
    )
    assert first["team"]["id"] != second["team"]["id"]
    assert first["access_token"] != second["access_token"]
    # Each token works, for its own workspace only.
    for answer in (first, second):
        test = await AsyncWebClient(
            token=answer["access_token"], base_url=slack.api_url
        ).auth_test()
        assert test["team_id"] == answer["team"]["id"]
        assert slack.team_of_token(answer["access_token"]) == answer["team"]["id"]


async def test_oauth_v2_access_refuses_a_used_code_and_wrong_credentials(slack: FakeSlack) -> None:
    client = AsyncWebClient(base_url=slack.api_url)
    code = await consent(slack)
    with pytest.raises(SlackApiError) as wrong:
        await client.oauth_v2_access(client_id=slack.client_id, client_secret="nope", code=code)
    assert wrong.value.response["error"] == "invalid_client_id"
    await client.oauth_v2_access(
        client_id=slack.client_id, client_secret=slack.client_secret, code=code
    )
    with pytest.raises(SlackApiError) as used:
        await client.oauth_v2_access(
            client_id=slack.client_id, client_secret=slack.client_secret, code=code
        )
    assert used.value.response["error"] == "invalid_code"


async def test_a_refreshed_token_replaces_the_old_one(slack: FakeSlack) -> None:
    slack.token_rotation = True
    client = AsyncWebClient(base_url=slack.api_url)
    granted = await client.oauth_v2_access(
        client_id=slack.client_id, client_secret=slack.client_secret, code=await consent(slack)
    )
    assert granted["expires_in"] == slack.token_lifetime
    refreshed = await client.oauth_v2_access(
        client_id=slack.client_id,
        client_secret=slack.client_secret,
        grant_type="refresh_token",
        refresh_token=granted["refresh_token"],
    )
    with pytest.raises(SlackApiError) as old:
        await AsyncWebClient(token=granted["access_token"], base_url=slack.api_url).auth_test()
    assert old.value.response["error"] == "invalid_auth"
    fresh = AsyncWebClient(token=refreshed["access_token"], base_url=slack.api_url)
    assert (await fresh.auth_test())["team_id"] == granted["team"]["id"]
