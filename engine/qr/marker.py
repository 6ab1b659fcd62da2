"""The scan marker a dynamic QR code adds to its short URL (`?qr=`), so a scan counts as one.

The marker is the QR code's UUID in unpadded base64url (22 characters), keeping the encoded
URL, and so the symbol, small.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from urllib.parse import urlencode
from uuid import UUID

QUERY_PARAM = "qr"


def qr_marker(qr_id: str) -> str:
    return base64.urlsafe_b64encode(UUID(qr_id).bytes).rstrip(b"=").decode("ascii")


def parse_qr_marker(marker: str) -> str | None:
    """The QR code id a marker names, or None for anything that is not a marker."""
    if len(marker) != 22:
        return None
    try:
        return str(UUID(bytes=base64.urlsafe_b64decode(marker + "==")))
    except (binascii.Error, ValueError):
        return None


def scan_marker(query: Mapping[str, str]) -> str:
    """The QR code id of a redirect request's `?qr=` marker, or ""."""
    return parse_qr_marker(query.get(QUERY_PARAM, "")) or ""


def dynamic_content(short_url: str, qr_id: str) -> str:
    return f"{short_url}?{urlencode({QUERY_PARAM: qr_marker(qr_id)})}"
