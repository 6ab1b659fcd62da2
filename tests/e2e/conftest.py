"""Fixtures the end-to-end tests share."""

from __future__ import annotations

from tests.pipeline_fixtures import pipeline  # noqa: F401 - the fixture, for every test here
