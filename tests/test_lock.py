"""The lock files install exactly what pyproject.toml allows, hash-checked, and the test lock
runs the bot on the very versions it runs on in production."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(name: str) -> dict[str, tuple[str, int]]:
    """{package: (version, number of hashes)} of a lock file."""
    found: dict[str, tuple[str, int]] = {}
    current = ""
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        match = PIN.match(line)
        if match:
            current = canonicalize_name(match.group(1))
            found[current] = (match.group(2), 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
    return found


def project() -> dict[str, list[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {"runtime": data["dependencies"], "test": data["optional-dependencies"]["test"]}


@pytest.mark.parametrize(
    ("lock", "groups"),
    [("requirements.lock", ["runtime"]), ("requirements-test.lock", ["runtime", "test"])],
)
def test_every_declared_dependency_is_pinned_within_its_bounds(
    lock: str, groups: list[str]
) -> None:
    locked = pins(lock)
    for group in groups:
        for spec in project()[group]:
            requirement = Requirement(spec)
            name = canonicalize_name(requirement.name)
            assert name in locked, f"{name} is not in {lock}: run ./scripts/lock"
            version = locked[name][0]
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock} pins {name}=={version}, outside {requirement.specifier}: "
                "run ./scripts/lock"
            )


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-test.lock"])
def test_every_pin_has_hashes(lock: str) -> None:
    locked = pins(lock)
    assert locked
    assert [name for name, (_, hashes) in locked.items() if hashes == 0] == []


def test_the_tests_run_on_the_runtime_versions() -> None:
    runtime, test = pins("requirements.lock"), pins("requirements-test.lock")
    assert {name: test.get(name, ("missing", 0))[0] for name in runtime} == {
        name: version for name, (version, _) in runtime.items()
    }
