"""storage/claims.py: a delivery is claimed once, by whichever process gets there first."""

from __future__ import annotations

import asyncio

from storage import Storage


async def test_claim_is_true_once_then_false(storage: Storage) -> None:
    assert await storage.claims.claim("Ev123") is True
    assert await storage.claims.claim("Ev123") is False
    assert await storage.claims.claim("Ev456") is True


async def test_claim_survives_a_reopen(url: str) -> None:
    first = await Storage.open(url)
    try:
        assert await first.claims.claim("Ev123") is True
    finally:
        await first.close()
    second = await Storage.open(url)
    try:
        assert await second.claims.claim("Ev123") is False
        assert await second.claims.claim("Ev789") is True
    finally:
        await second.close()


async def test_two_storages_on_one_database_claim_each_key_once(url: str) -> None:
    """Two Storage instances (two engines, two pools) stand for two processes."""
    first = await Storage.open(url)
    try:
        second = await Storage.open(url)
        try:
            assert await first.claims.claim("Ev1") is True
            assert await second.claims.claim("Ev1") is False
            assert await second.claims.claim("Ev2") is True
            assert await first.claims.claim("Ev2") is False

            keys = [f"Race{i}" for i in range(10)]
            won = await asyncio.wait_for(
                asyncio.gather(*(s.claims.claim(k) for k in keys for s in (first, second))),
                timeout=60,
            )
            per_key = [won[i : i + 2] for i in range(0, len(won), 2)]
            assert all(sorted(pair) == [False, True] for pair in per_key), per_key
        finally:
            await second.close()
    finally:
        await first.close()
