"""The settings form's key field and the Home tab's key line: within Block Kit's limits, and
the key read back from a submitted form."""

from __future__ import annotations

import pytest

from bot.workspaces import KeyStatus
from handlers.model_key_render import KEY_BLOCK, key_blocks, key_from_state, key_home_block
from tests.fakes.slack_payloads import modal_state
from tests.fakes.slack_server import block_kit_problems


@pytest.mark.parametrize("status", list(KeyStatus))
def test_the_key_blocks_fit_and_never_hold_an_initial_value(status: KeyStatus) -> None:
    blocks = key_blocks(status, storable=True)
    assert block_kit_problems(blocks) == []
    assert block_kit_problems([key_home_block(status)]) == []
    [field] = [b for b in blocks if b.get("block_id") == KEY_BLOCK]
    assert "initial_value" not in field["element"]
    assert any(b.get("block_id") == "model_key_remove" for b in blocks) == (status is KeyStatus.OWN)


def test_without_secret_key_the_form_says_so_instead_of_asking() -> None:
    blocks = key_blocks(KeyStatus.SHARED, storable=False)
    assert all(b.get("type") != "input" for b in blocks)
    assert "SECRET_KEY" in str(blocks)


def test_the_submitted_key_and_removal_are_read_back() -> None:
    view = {"blocks": key_blocks(KeyStatus.OWN, storable=True)}
    assert key_from_state(modal_state(view, {KEY_BLOCK: "  sk-new  "})) == ("sk-new", False)
    removed = modal_state(view, {"model_key_remove": ["remove"]})
    assert key_from_state(removed) == ("", True)
    assert key_from_state({}) == ("", False)
