"""Shared fixtures live in plugin modules, one per concern, so they can grow independently."""

from __future__ import annotations

pytest_plugins = [
    "tests.plugins.fake_provider",
    "tests.plugins.database",
    "tests.plugins.receiver",
    "tests.plugins.services",
    "tests.plugins.browser",
]
