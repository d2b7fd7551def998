"""Many workspaces end to end: installs through /slack/install and /slack/oauth_redirect (the
fake Slack answers oauth.v2.access with a new workspace and token each time), each workspace
served with its own token and its own Model Studio key, uninstalls, on both engines."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from sqlalchemy import text
from tenacity import wait_none

from bot.config import load_settings
from bot.conversation import ConversationKey, State
from bot.qwen.client import RetryPolicy
from bot.runtime import EVENTS_PATH, BotRuntime
from bot.services import Services
from bot.workspaces import DAY, KEY_REFUSED, NO_KEY
from handlers.render import STOP_ACTION, key_value
from tests.fakes.dashscope_server import (
    DEFAULT_REFERENCES,
    FakeDashScope,
    Gate,
    clarification_script,
    research_script,
)
from tests.fakes.slack_payloads import (
    app_mention,
    block_action,
    event_callback,
    message,
    modal_state,
    post_signed,
    slash_command,
    view_submission,
)
from tests.fakes.slack_server import FakeSlack, Workspace
from tests.test_e2e_research import REPORT_CHUNKS

REPO_ROOT = Path(__file__).resolve().parents[1]
SIGNING_SECRET = "multi-signing-secret"
SECRET_KEY = "s" * 40


@dataclass
class Multi:
    runtime: BotRuntime
    slack: FakeSlack
    dashscope: FakeDashScope
    session: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.runtime.http_port}"

    @property
    def services(self) -> Services:
        assert self.runtime.services is not None
        return self.runtime.services

    async def install(self, workspace: Workspace | None = None) -> tuple[int, str]:
        """A person opens the install link, consents on Slack, and comes back: the status and
        text of the page the bot shows at the end."""
        if workspace is not None:
            self.slack.next_installs.append(workspace)
        async with self.session.get(f"{self.base}/slack/install") as page:
            assert page.status == 200
            link = authorize_link(await page.text())
            # The state cookie is `Secure` (the bot runs behind HTTPS in production): carried
            # by hand here, as a browser would over HTTPS.
            cookie = page.headers["Set-Cookie"].split(";")[0]
        async with self.session.get(link, allow_redirects=False) as consent:
            assert consent.status == 302
            back_to = consent.headers["Location"]
        return await self.come_back(back_to, cookie)

    async def come_back(self, url: str, cookie: str | None) -> tuple[int, str]:
        """Slack's redirect back to the bot, with the browser's state cookie."""
        headers = {"Cookie": cookie} if cookie else {}
        async with self.session.get(url, headers=headers) as back:
            return back.status, await back.text()

    async def runtime_storage_key(self, team: str) -> str | None:
        """The stored (sealed) model key of `team`, as the database holds it."""
        return await self.services.model_keys._keys.get(team)

    async def bot_of(self, team: str) -> Any:
        store = self.runtime.installations
        assert store is not None
        return await store.async_find_bot(enterprise_id=None, team_id=team)

    async def send(self, payload: dict[str, Any], kind: str = "event") -> tuple[int, str]:
        status, body, _ = await post_signed(
            self.session,
            self.base + EVENTS_PATH,
            SIGNING_SECRET,
            payload,
            kind=kind,  # type: ignore[arg-type]
        )
        return status, body


def authorize_link(page: str) -> str:
    match = re.search(r'href="([^"]*/oauth/v2/authorize[^"]*)"', page)
    assert match is not None, page
    return html.unescape(match.group(1))


def multi_env(slack: FakeSlack, dashscope: FakeDashScope, db: str, **extra: str) -> dict[str, str]:
    return {
        "SLACK_CLIENT_ID": slack.client_id,
        "SLACK_CLIENT_SECRET": slack.client_secret,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "DASHSCOPE_HTTP_BASE_URL": dashscope.base_url,
        "DATABASE_URL": db,
        "SECRET_KEY": SECRET_KEY,
        "DASHSCOPE_API_KEY": "sk-test",  # the shared key of workspaces without their own
        "HOST": "127.0.0.1",
        "PORT": "0",
        "PROGRESS_UPDATE_SECONDS": "0.3",
        "DRAIN_SECONDS": "0",
        **extra,
    }


@pytest.fixture
async def multi(
    slack: FakeSlack, dashscope: FakeDashScope, database_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Multi]:
    extra = getattr(request, "param", {})
    settings = load_settings(multi_env(slack, dashscope, database_url, **extra), dotenv=None)
    runtime = BotRuntime(
        settings, model_retry=RetryPolicy(attempts=2, max_seconds=5, wait=wait_none())
    )
    await runtime.start()
    slack.redirect_uri = f"http://127.0.0.1:{runtime.http_port}/slack/oauth_redirect"
    async with aiohttp.ClientSession() as session:
        try:
            yield Multi(runtime, slack, dashscope, session)
        finally:
            await runtime.stop()


def mention_in(team: str, text: str, *, enterprise: str | None = None, **kw: Any) -> dict[str, Any]:
    event = app_mention(text, team=team, **kw)
    payload = event_callback(event, team_id=team)
    if enterprise is not None:
        payload["enterprise_id"] = enterprise
        payload["authorizations"] = [
            {
                "enterprise_id": enterprise,
                "team_id": None,
                "user_id": "UBOT",
                "is_bot": True,
                "is_enterprise_install": True,
            }
        ]
    return payload


async def test_install_link_leads_to_slack_consent_and_back(multi: Multi) -> None:
    status, page = await multi.install(Workspace("TA", name="Alpha"))
    assert status == 200, page
    [consent] = multi.slack.authorize_requests
    assert consent["client_id"] == multi.slack.client_id
    assert "app_mentions:read" in consent["scope"] and "chat:write" in consent["scope"]
    [exchange] = multi.slack.calls_to("oauth.v2.access")
    assert exchange.error is None
    workspace = await multi.services.model_keys._keys.get("TA")  # no key yet
    assert workspace is None


# --- helpers for the flows below --------------------------------------------------------------

QUESTION = "Which years matter most to you?"


async def save_key(multi: Multi, team: str, key: str) -> dict[str, Any]:
    """An admin of `team` opens the settings form and saves `key`; the ack's body."""
    command = slash_command("/research", "settings", user_id="UADMIN", team_id=team)
    status, _ = await multi.send(command, "command")
    assert status == 200
    [opened] = await multi.slack.wait_for_call(
        "views.open", lambda c: c.token == multi.slack.token_of(team)
    )
    view = opened.args["view"]
    values = modal_state(view, {"model_key": key})
    status, body = await multi.send(
        view_submission(view, values, user_id="UADMIN", team_id=team), "interactive"
    )
    assert status == 200
    return json.loads(body) if body else {}


async def ask_in(
    multi: Multi, team: str, *, enterprise: str | None = None, user: str = "UUSER"
) -> Any:
    """A mention in `team`, answered with the clarifying question; its post."""
    multi.dashscope.enqueue(clarification_script(QUESTION))
    payload = mention_in(
        team, "<@UBOT> research the history of typography", enterprise=enterprise, user=user
    )
    ts = payload["event"]["ts"]
    status, _ = await multi.send(payload)
    assert status == 200
    [post] = await multi.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == ts
    )
    return post


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until `check()` holds (the bot acknowledges an event before it handles it)."""
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not so within {timeout} s")


def uninstalled(team: str) -> dict[str, Any]:
    return event_callback({"type": "app_uninstalled", "event_ts": "1.0"}, team_id=team)


# --- two workspaces ---------------------------------------------------------------------------


async def test_two_workspaces_each_use_their_own_token_key_and_ledger(multi: Multi) -> None:
    slack, dashscope = multi.slack, multi.dashscope
    assert (await multi.install(Workspace("TA", name="Alpha")))[0] == 200
    assert (await multi.install(Workspace("TB", name="Beta")))[0] == 200
    assert slack.token_of("TA") != slack.token_of("TB")
    dashscope.api_keys |= {"sk-alpha-key", "sk-beta-key"}

    assert (await save_key(multi, "TA", "sk-alpha-key"))["response_action"] == "update"
    assert (await save_key(multi, "TB", "sk-beta-key"))["response_action"] == "update"
    assert dashscope.key_checks == ["sk-alpha-key", "sk-beta-key"]

    alpha = await ask_in(multi, "TA", user="UALPHA")
    beta = await ask_in(multi, "TB", user="UBETA")
    # Each workspace's posts carry its own bot token; each model call its own key.
    assert alpha.token == slack.token_of("TA") and beta.token == slack.token_of("TB")
    assert [dashscope.key_used(r) for r in dashscope.requests] == ["sk-alpha-key", "sk-beta-key"]
    for call in slack.calls:
        if call.method not in ("oauth.v2.access",) and call.args.get("channel") == "C1":
            assert slack.team_of_token(call.token) in ("TA", "TB")

    # Billed to the workspace it was asked in, and no other.
    ledger = multi.services.ledger
    [alpha_row] = await ledger.records("TA")
    [beta_row] = await ledger.records("TB")
    assert alpha_row.thread_ts == alpha.args["thread_ts"]
    assert beta_row.thread_ts == beta.args["thread_ts"]

    # Each Home tab shows its own workspace's usage and key, published with its own token.
    for team, asker, other in (("TA", "UALPHA", "UBETA"), ("TB", "UBETA", "UALPHA")):
        opened = {"type": "app_home_opened", "user": asker, "channel": "D1", "tab": "home"}
        await multi.send(event_callback(opened, team_id=team))
        [home] = await slack.wait_for_call(
            "views.publish", lambda c, asker=asker: c.args.get("user_id") == asker
        )
        assert home.token == slack.token_of(team)
        shown = json.dumps(home.args["view"])
        assert f"<@{asker}>" in shown and f"<@{other}>" not in shown
        assert "this workspace's own" in shown


async def test_a_second_workspaces_japanese_member_reads_japanese_on_home_and_buttons(
    multi: Multi,
) -> None:
    """Each person's language is looked up with their own workspace's token: in a second
    workspace too, a ja-JP member gets Japanese (another workspace's token, or none, would
    not find them and leave them in English)."""
    slack = multi.slack
    assert (await multi.install(Workspace("TA", name="Alpha")))[0] == 200
    assert (await multi.install(Workspace("TB", name="Beta")))[0] == 200
    member = {**slack.users["UUSER"], "id": "UJA", "name": "ja", "team_id": "TB"}
    slack.users["UJA"] = {**member, "locale": "ja-JP"}

    opened = {"type": "app_home_opened", "user": "UJA", "channel": "D1", "tab": "home"}
    await multi.send(event_callback(opened, team_id="TB"))
    [home] = await slack.wait_for_call("views.publish", lambda c: c.args.get("user_id") == "UJA")
    assert home.token == slack.token_of("TB")
    shown = json.dumps(home.args["view"], ensure_ascii=False)
    assert "Qwen Deep Research の使い方" in shown and "このワークスペースの使用量" in shown
    assert "how to use it" not in shown and "Usage in this workspace" not in shown

    # Research someone else started in TB; UJA presses its Stop button and is told, in
    # Japanese, who may stop it.
    multi.dashscope.enqueue(clarification_script(QUESTION))
    payload = mention_in("TB", "<@UBOT> research the history of typography")
    thread = str(payload["event"]["ts"])
    await multi.send(payload)
    await slack.wait_for_call("chat.postMessage", lambda c: c.args.get("thread_ts") == thread)
    gate = Gate(timeout=60)
    script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2)
    multi.dashscope.enqueue([*script[:6], gate, *script[6:]])
    answer = message("Type design in print", thread_ts=thread, team="TB")
    await multi.send(event_callback(answer, team_id="TB"))
    await gate.wait_reached(timeout=10)
    key = ConversationKey("TB", "C1", thread)
    conversation = await multi.services.conversations.get(key)
    assert conversation is not None and conversation.progress_ts is not None
    press = block_action(
        STOP_ACTION,
        key_value(key),
        user_id="UJA",
        team_id="TB",
        message_ts=conversation.progress_ts,
        thread_ts=thread,
    )
    await multi.send(press, "interactive")
    [told] = await slack.wait_for_call("chat.postEphemeral")
    assert told.args["user"] == "UJA" and told.token == slack.token_of("TB")
    assert "このリサーチを停止できるのは" in told.args["text"]
    gate.release()


async def test_a_workspace_without_an_installation_is_acknowledged_and_ignored(
    multi: Multi,
) -> None:
    await multi.install(Workspace("TA"))
    before = len(multi.slack.calls)
    payload = mention_in("TSTRANGER", "<@UBOT> research something")
    status, _ = await multi.send(payload)
    assert status == 200
    assert not multi.dashscope.requests
    assert [c.method for c in multi.slack.calls[before:]] == []
    assert (
        await multi.services.conversations.get(
            ConversationKey("TSTRANGER", "C1", payload["event"]["ts"])
        )
        is None
    )


async def test_without_its_own_key_a_workspace_uses_the_shared_one(multi: Multi) -> None:
    await multi.install(Workspace("TA"))
    await ask_in(multi, "TA")
    assert [multi.dashscope.key_used(r) for r in multi.dashscope.requests] == ["sk-test"]


@pytest.mark.parametrize(
    "multi", [{"DASHSCOPE_API_KEY": "sk-test", "REQUIRE_WORKSPACE_KEY": "true"}], indirect=True
)
async def test_required_key_refuses_with_a_sentence_until_an_admin_adds_one(multi: Multi) -> None:
    await multi.install(Workspace("TA"))
    payload = mention_in("TA", "<@UBOT> research the history of typography")
    await multi.send(payload)
    [notice] = await multi.slack.wait_for_call(
        "chat.postMessage", lambda c: c.args.get("thread_ts") == payload["event"]["ts"]
    )
    assert NO_KEY.split(",")[0] in json.dumps(notice.args)
    assert "/research settings" in json.dumps(notice.args)
    assert not multi.dashscope.requests

    multi.dashscope.api_keys.add("sk-own-key")
    assert (await save_key(multi, "TA", "sk-own-key"))["response_action"] == "update"
    await ask_in(multi, "TA")
    assert [multi.dashscope.key_used(r) for r in multi.dashscope.requests] == ["sk-own-key"]


async def test_a_key_model_studio_refuses_is_not_saved(
    multi: Multi, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await multi.install(Workspace("TA"))
    ack = await save_key(multi, "TA", "sk-wrong-key")
    assert ack["response_action"] == "errors"
    assert ack["errors"] == {"model_key": KEY_REFUSED}
    assert await multi.services.model_keys.own("TA") is None
    # The key reached Model Studio, and no log line.
    assert multi.dashscope.key_checks == ["sk-wrong-key"]
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert said and not any("sk-wrong-key" in line for line in said)


async def test_a_saved_key_is_stored_encrypted_and_never_shown_again(multi: Multi) -> None:
    await multi.install(Workspace("TA"))
    multi.dashscope.api_keys.add("sk-secret-alpha")
    await save_key(multi, "TA", "sk-secret-alpha")
    sealed = await multi.runtime_storage_key("TA")
    assert sealed and "sk-secret-alpha" not in sealed
    command = slash_command("/research", "settings", user_id="UADMIN", team_id="TA")
    await multi.send(command, "command")
    opened = await multi.slack.wait_for_call("views.open", count=2)
    assert "sk-secret-alpha" not in json.dumps(opened[-1].args)
    assert "uses its own key" in json.dumps(opened[-1].args)


# --- OAuth state ------------------------------------------------------------------------------


async def test_a_forged_state_is_refused_and_the_code_never_exchanged(multi: Multi) -> None:
    async with multi.session.get(f"{multi.base}/slack/install") as page:
        link = authorize_link(await page.text())
    async with multi.session.get(link, allow_redirects=False) as consent:
        back_to = consent.headers["Location"]
    code = parse_qs(urlsplit(back_to).query)["code"][0]
    forged = f"{multi.slack.redirect_uri}?code={code}&state=forged-state"
    status, page = await multi.come_back(forged, "slack-app-oauth-state=forged-state")
    assert status == 401 and "Something Went Wrong" in page
    assert multi.slack.calls_to("oauth.v2.access") == []


async def test_a_replayed_state_is_refused(multi: Multi) -> None:
    async with multi.session.get(f"{multi.base}/slack/install") as page:
        link = authorize_link(await page.text())
        cookie = page.headers["Set-Cookie"].split(";")[0]
    async with multi.session.get(link, allow_redirects=False) as consent:
        back_to = consent.headers["Location"]
    assert (await multi.come_back(back_to, cookie))[0] == 200
    status, page = await multi.come_back(back_to, cookie)
    assert status == 401 and "Something Went Wrong" in page
    assert len(multi.slack.calls_to("oauth.v2.access")) == 1


# --- Enterprise Grid, token rotation ----------------------------------------------------------


async def test_an_org_wide_install_serves_each_workspace_apart(multi: Multi) -> None:
    slack = multi.slack
    await multi.install(Workspace(None, "E1", name="Org"))
    await multi.install(Workspace("TSOLO"))
    org_token = slack.token_of(None, "E1")
    one = await ask_in(multi, "T5", enterprise="E1")
    two = await ask_in(multi, "T6", enterprise="E1")
    solo = await ask_in(multi, "TSOLO")
    assert one.token == two.token == org_token
    assert solo.token == slack.token_of("TSOLO")
    ledger = multi.services.ledger
    assert [r.thread_ts for r in await ledger.records("T5")] == [one.args["thread_ts"]]
    assert [r.thread_ts for r in await ledger.records("T6")] == [two.args["thread_ts"]]
    conversations = multi.services.conversations
    assert await conversations.get(ConversationKey("T5", "C1", two.args["thread_ts"])) is None


async def test_an_expiring_bot_token_is_rotated_and_the_new_one_used(multi: Multi) -> None:
    slack = multi.slack
    slack.token_rotation = True
    slack.token_lifetime = 600  # expires within the two hours the bot rotates ahead
    await multi.install(Workspace("TA"))
    first = slack.token_of("TA")
    slack.token_lifetime = 43_200
    post = await ask_in(multi, "TA")
    rotated = slack.token_of("TA")
    assert rotated != first and post.token == rotated
    refresh = [c for c in slack.calls_to("oauth.v2.access") if c.args.get("grant_type")]
    assert refresh and refresh[0].args["grant_type"] == "refresh_token"


# --- uninstall --------------------------------------------------------------------------------


async def test_uninstall_deletes_tokens_and_keys_at_once_and_the_other_is_unaffected(
    multi: Multi,
) -> None:
    slack, dashscope = multi.slack, multi.dashscope
    alpha, beta = Workspace("TA"), Workspace("TB")
    await multi.install(alpha)
    await multi.install(beta)
    dashscope.api_keys |= {"sk-alpha-key", "sk-beta-key"}
    await save_key(multi, "TA", "sk-alpha-key")
    await save_key(multi, "TB", "sk-beta-key")
    asked = await ask_in(multi, "TA")
    thread = ConversationKey("TA", "C1", asked.args["thread_ts"])

    slack.uninstall(alpha)
    status, _ = await multi.send(uninstalled("TA"))
    assert status == 200
    keys = multi.services.model_keys

    async def alpha_gone() -> bool:
        return await keys.own("TA") is None

    await eventually(alpha_gone)
    assert await keys.own("TA") is None and await keys.own("TB") == "sk-beta-key"
    assert await multi.bot_of("TA") is None and await multi.bot_of("TB") is not None

    # Its events are acknowledged and go nowhere; the other workspace goes on.
    requests = len(dashscope.requests)
    status, _ = await multi.send(mention_in("TA", "<@UBOT> research again"))
    assert status == 200
    assert len(dashscope.requests) == requests
    await ask_in(multi, "TB")

    # Its content waits out the retention period (a reinstall would find it), then goes; its
    # usage stays as anonymous totals.
    assert await multi.services.conversations.get(thread) is not None
    lifecycle = multi.runtime.lifecycle
    assert lifecycle is not None
    assert await lifecycle.purge_due(now=time.time() + 29 * DAY) == 0
    assert await lifecycle.purge_due(now=time.time() + 31 * DAY) == 1
    assert await multi.services.conversations.get(thread) is None
    [total] = await multi.services.ledger.records("TA")
    assert (total.user_id, total.channel_id, total.thread_ts) == ("", "", "")
    assert total.input_tokens > 0
    assert len(await multi.services.ledger.records("TB")) == 1


async def test_a_reinstall_within_the_retention_period_finds_its_history(multi: Multi) -> None:
    alpha = Workspace("TA")
    await multi.install(alpha)
    asked = await ask_in(multi, "TA")
    thread = ConversationKey("TA", "C1", asked.args["thread_ts"])
    multi.slack.uninstall(alpha)
    await multi.send(uninstalled("TA"))

    async def tokens_gone() -> bool:
        return await multi.bot_of("TA") is None

    await eventually(tokens_gone)
    await multi.install(Workspace("TA"))
    lifecycle = multi.runtime.lifecycle
    assert lifecycle is not None
    assert await lifecycle.purge_due(now=time.time() + 31 * DAY) == 0
    assert await multi.services.conversations.get(thread) is not None
    assert len(await multi.services.ledger.records("TA")) == 1


@pytest.mark.parametrize("multi", [{"DATA_RETENTION_DAYS": "0"}], indirect=True)
async def test_no_retention_deletes_the_content_at_once(multi: Multi) -> None:
    alpha = Workspace("TA")
    await multi.install(alpha)
    asked = await ask_in(multi, "TA")
    multi.slack.uninstall(alpha)
    await multi.send(uninstalled("TA"))
    thread = ConversationKey("TA", "C1", asked.args["thread_ts"])

    async def deleted() -> bool:
        return await multi.services.conversations.get(thread) is None

    await eventually(deleted)
    [total] = await multi.services.ledger.records("TA")
    assert total.user_id == "" and total.thread_ts == ""


# --- the operator's view ----------------------------------------------------------------------


async def run_cli(database_url: str, *args: str, cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "workspaces",
        *args,
        cwd=cwd,
        env={**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(REPO_ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


async def test_workspaces_command_lists_installations_usage_and_keys(
    multi: Multi, database_url: str, tmp_path: Path
) -> None:
    alpha = Workspace("TA", name="Alpha")
    await multi.install(alpha)
    await multi.install(Workspace("TB", name="Beta"))
    multi.dashscope.api_keys.add("sk-alpha-key")
    await save_key(multi, "TA", "sk-alpha-key")
    await ask_in(multi, "TA")
    multi.slack.uninstall(alpha)
    await multi.send(uninstalled("TA"))

    async def alpha_gone() -> bool:
        return await multi.services.model_keys.own("TA") is None

    await eventually(alpha_gone)

    status, out, err = await run_cli(database_url, "--json", cwd=tmp_path)
    assert status == 0, err
    listed = {w["team_id"]: w for w in json.loads(out)}
    assert set(listed) == {"TA", "TB"}
    assert listed["TA"]["name"] == "Alpha" and listed["TA"]["uninstalled_at"] is not None
    assert listed["TA"]["own_model_key"] is False  # deleted with the uninstall
    assert listed["TA"]["all_time"]["calls"] == 1
    assert listed["TA"]["this_month"]["input_tokens"] > 0
    assert listed["TB"]["all_time"]["calls"] == 0 and listed["TB"]["uninstalled_at"] is None

    status, out, err = await run_cli(database_url, cwd=tmp_path)
    assert status == 0, err
    assert "Alpha" in out and "Beta" in out and "uninstalled, content deleted" in out
    assert "sk-alpha-key" not in out


async def test_uninstall_stops_the_workspaces_running_research(multi: Multi) -> None:
    alpha = Workspace("TA")
    await multi.install(alpha)
    asked = await ask_in(multi, "TA")
    thread = asked.args["thread_ts"]
    gate = Gate(timeout=60)
    script = research_script(REPORT_CHUNKS, DEFAULT_REFERENCES, rounds=2)
    multi.dashscope.enqueue([*script[:6], gate, *script[6:]])
    answer = message("Since 1450", thread_ts=thread, team="TA")
    await multi.send(event_callback(answer, team_id="TA"))
    await gate.wait_reached(timeout=10)
    key = ConversationKey("TA", "C1", thread)

    multi.slack.uninstall(alpha)
    await multi.send(uninstalled("TA"))

    async def stopped() -> bool:
        conversation = await multi.services.conversations.get(key)
        cancelled = conversation is not None and conversation.state is State.CANCELLED
        return cancelled and not multi.services.research.is_running(key)

    await eventually(stopped)
    await multi.dashscope.wait_for_disconnects(1)
    gate.release()
    # What the cut call used is billed to the workspace all the same.
    assert {r.kind for r in await multi.services.ledger.records("TA")} == {"clarify", "research"}


async def test_an_org_wide_uninstall_covers_every_workspace_of_the_org(multi: Multi) -> None:
    org = Workspace(None, "E1", name="Org")
    await multi.install(org)
    await multi.install(Workspace("TSOLO"))
    multi.dashscope.api_keys |= {"sk-five", "sk-six", "sk-solo"}
    await ask_in(multi, "T5", enterprise="E1")
    await ask_in(multi, "T6", enterprise="E1")
    keys = multi.services.model_keys
    store = multi.runtime.installations
    assert store is not None
    for team, key in (("T5", "sk-five"), ("T6", "sk-six"), ("TSOLO", "sk-solo")):
        # Saved directly: the form's own path is covered above.
        assert await keys.save(team, "UADMIN", key) is None

    multi.slack.uninstall(org)
    payload = uninstalled("T5")
    payload["enterprise_id"] = "E1"
    payload["authorizations"][0].update(enterprise_id="E1", team_id=None)
    payload["authorizations"][0]["is_enterprise_install"] = True
    await multi.send(payload)

    async def org_gone() -> bool:
        return await keys.own("T5") is None and await keys.own("T6") is None

    await eventually(org_gone)
    assert await keys.own("TSOLO") == "sk-solo"
    assert await store.async_find_bot(enterprise_id="E1", team_id=None) is None
    assert await multi.bot_of("TSOLO") is not None

    # The uninstall was in the inbox before its ack, and is marked done once handled.
    async def recorded_and_done() -> bool:
        async with multi.services.inbox._db.read() as conn:  # type: ignore[attr-defined]
            rows = (
                await conn.execute(
                    text("SELECT done_at FROM inbox WHERE event_id = :id"),
                    {"id": payload["event_id"]},
                )
            ).all()
        assert len(rows) == 1
        return rows[0][0] is not None

    await eventually(recorded_and_done)


async def test_revoked_bot_tokens_end_the_install_like_an_uninstall(multi: Multi) -> None:
    alpha = Workspace("TA")
    await multi.install(alpha)
    await multi.install(Workspace("TB"))
    multi.dashscope.api_keys.add("sk-alpha-key")
    await save_key(multi, "TA", "sk-alpha-key")
    multi.slack.uninstall(alpha)
    revoked = {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["UBOT"]}}
    status, _ = await multi.send(event_callback(revoked, team_id="TA"))
    assert status == 200

    async def gone() -> bool:
        return (
            await multi.bot_of("TA") is None and await multi.services.model_keys.own("TA") is None
        )

    await eventually(gone)
    assert await multi.bot_of("TB") is not None
