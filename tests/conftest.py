"""conftest.py — fixtures shared by kiln's pytest suites (tests/models/...).

    kiln        the kiln executable ($KILN_BIN, else $KILN_BUILD_DIR/kiln, default <repo>/build/kiln)
    shared_dir  the read-only shared data ($KILN_SHARED_DIR, default <repo>/../shared)

A missing prerequisite fails the test that needs it with a message saying what is missing and how
to provide it; nothing is ever skipped. The helpers themselves live in tests/kilnrun.py.
"""
from __future__ import annotations

import pytest

import kilnrun


@pytest.fixture(scope="session")
def kiln():
    try:
        return kilnrun.kiln_binary()
    except kilnrun.MissingPrerequisite as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def shared_dir():
    d = kilnrun.shared_dir()
    if not d.is_dir():
        pytest.fail(f"shared data directory not found: {d} (set KILN_SHARED_DIR)", pytrace=False)
    return d
