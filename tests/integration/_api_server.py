"""The in-process api for given settings (kept as an import path for older test modules)."""

from tests.fakes.api import serve_settings as serve_api

__all__ = ["serve_api"]
