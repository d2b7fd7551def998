"""A workspace's Model Studio key, in process with an in-memory repository: which key a call
uses, when new work is refused, and what saving a key says when it cannot be kept."""

from __future__ import annotations

import pytest

from bot.qwen.client import ModelCall
from bot.qwen.keys import KeyCheck
from bot.secrets_box import SecretBox
from bot.workspaces import (
    KEY_NOT_STORABLE,
    KEY_REFUSED,
    KEY_SHAPE,
    KEY_UNCHECKED,
    NO_KEY,
    KeyStatus,
    ModelKeys,
)

SECRET = "k" * 40


class MemoryKeys:
    def __init__(self) -> None:
        self.rows: dict[str, str] = {}

    async def get(self, team_id: str) -> str | None:
        return self.rows.get(team_id)

    async def put(self, team_id: str, sealed: str, updated_by: str) -> None:
        self.rows[team_id] = sealed

    async def forget_key(self, team_id: str) -> None:
        self.rows.pop(team_id, None)

    async def forget_secrets(self, team_id: str) -> None:
        self.rows.pop(team_id, None)


def keys(
    *,
    fallback: str = "",
    required: bool = False,
    check: KeyCheck = KeyCheck.VALID,
    box: SecretBox | None = SecretBox(SECRET),  # noqa: B008
) -> tuple[ModelKeys, MemoryKeys, list[str]]:
    checked: list[str] = []
    repo = MemoryKeys()

    async def checker(key: str) -> KeyCheck:
        checked.append(key)
        return check

    return ModelKeys(repo, box, fallback=fallback, required=required, check=checker), repo, checked


async def test_a_saved_key_is_sealed_for_its_workspace_and_used_for_its_calls() -> None:
    model_keys, repo, checked = keys(fallback="sk-shared")
    assert await model_keys.save("TA", "UADMIN", "  sk-own-alpha  ") is None
    assert checked == ["sk-own-alpha"]
    assert "sk-own-alpha" not in repo.rows["TA"]
    call = await model_keys.keyed("TA", ModelCall("qwen-plus", ()))
    assert call.api_key == "sk-own-alpha" and "sk-own-alpha" not in repr(call)
    other = await model_keys.keyed("TB", ModelCall("qwen-plus", ()))
    assert other.api_key == "sk-shared"
    assert await model_keys.status("TA") is KeyStatus.OWN
    assert await model_keys.status("TB") is KeyStatus.SHARED
    # Copied into another workspace's row, the ciphertext opens nothing.
    repo.rows["TB"] = repo.rows["TA"]
    assert await model_keys.own("TB") is None


@pytest.mark.parametrize(
    ("check", "sentence"), [(KeyCheck.INVALID, KEY_REFUSED), (KeyCheck.UNREACHABLE, KEY_UNCHECKED)]
)
async def test_a_key_not_confirmed_by_model_studio_is_not_saved(
    check: KeyCheck, sentence: str
) -> None:
    model_keys, repo, _ = keys(check=check)
    assert await model_keys.save("TA", "UADMIN", "sk-maybe") == sentence
    assert repo.rows == {}


async def test_a_value_that_is_no_key_is_refused_before_any_call() -> None:
    model_keys, _, checked = keys()
    assert await model_keys.save("TA", "UADMIN", "my password") == KEY_SHAPE
    assert checked == []


async def test_without_secret_key_nothing_can_be_saved() -> None:
    model_keys, _, checked = keys(box=None)
    assert await model_keys.save("TA", "UADMIN", "sk-own") == KEY_NOT_STORABLE
    assert checked == [] and not model_keys.storable


async def test_refusals_without_a_usable_key() -> None:
    required, _, _ = keys(fallback="sk-shared", required=True)
    assert await required.refusal("TA") == NO_KEY
    assert await required.status("TA") is KeyStatus.NONE
    nothing, _, _ = keys()
    assert await nothing.refusal("TA") == NO_KEY
    shared, _, _ = keys(fallback="sk-shared")
    assert await shared.refusal("TA") is None


async def test_removing_the_own_key_falls_back_to_the_shared_one() -> None:
    model_keys, _, _ = keys(fallback="sk-shared")
    await model_keys.save("TA", "UADMIN", "sk-own")
    await model_keys.remove("TA", "UADMIN")
    assert await model_keys.key("TA") == "sk-shared"
