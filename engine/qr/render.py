"""Render QR codes as PNG or SVG with colours, scale, quiet zone and an optional centred logo.

Pure functions over bytes: no I/O besides Pillow's in-memory images. A logo hides the middle
modules, so a style with a logo always renders with error correction H (30 % recoverable).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from typing import Literal

import segno
from PIL import Image, UnidentifiedImageError

from engine.errors import ValidationFailed

ErrorCorrection = Literal["L", "M", "Q", "H"]
ERROR_LEVELS: tuple[ErrorCorrection, ...] = ("L", "M", "Q", "H")
MAX_LOGO_BYTES = 256 * 1024
MAX_LOGO_SIDE = 2048
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# The logo covers at most this fraction of the symbol's width (≈ 5 % of its area): well inside
# what level H recovers, with room for the finder patterns' neighbourhood.
LOGO_WIDTH_FRACTION = 0.22
COLOR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True, slots=True)
class QrStyle:
    error_correction: ErrorCorrection = "M"
    foreground: str = "#000000"
    background: str = "#FFFFFF"
    scale: int = 10
    border: int = 4
    logo_png: bytes | None = None

    @property
    def effective_error(self) -> ErrorCorrection:
        return "H" if self.logo_png else self.error_correction


def validate_color(value: str, *, field: str) -> str:
    if not isinstance(value, str) or not COLOR_RE.match(value):
        raise ValidationFailed(f"{field} must be a #RRGGBB colour", field=field)
    return value.upper()


def validate_error_correction(value: str, *, field: str = "error_correction") -> ErrorCorrection:
    upper = value.upper() if isinstance(value, str) else ""
    for level in ERROR_LEVELS:
        if upper == level:
            return level
    raise ValidationFailed(f"{field} must be one of L, M, Q, H", field=field)


def decode_logo(value: str, *, field: str = "logo") -> bytes:
    """A PNG given as base64 or as a `data:image/png;base64,` URL → its bytes (checked)."""
    data = value.strip()
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if header.lower() != "data:image/png;base64":
            raise ValidationFailed(f"{field} must be a data:image/png;base64 URL or base64 PNG", field=field)
    if len(data) > (MAX_LOGO_BYTES * 4) // 3 + 8:
        raise ValidationFailed(f"{field} is larger than {MAX_LOGO_BYTES // 1024} KiB", field=field)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed(f"{field} is not valid base64", field=field) from None
    if len(raw) > MAX_LOGO_BYTES:
        raise ValidationFailed(f"{field} is larger than {MAX_LOGO_BYTES // 1024} KiB", field=field)
    if not raw.startswith(PNG_MAGIC):
        raise ValidationFailed(f"{field} must be a PNG image", field=field)
    try:
        with Image.open(io.BytesIO(raw)) as image:
            width, height = image.size
            if max(width, height) > MAX_LOGO_SIDE:
                raise ValidationFailed(f"{field} is larger than {MAX_LOGO_SIDE} px", field=field)
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError):
        raise ValidationFailed(f"{field} is not a readable PNG image", field=field) from None
    return raw


def make_symbol(content: str, style: QrStyle) -> segno.QRCode:
    return segno.make(content, error=style.effective_error.lower(), micro=False, boost_error=False)


def _logo_box(style: QrStyle, symbol_px: int) -> tuple[int, int]:
    """(side, offset) in pixels of the square the logo occupies, centred on the symbol."""
    modules_px = symbol_px - 2 * style.border * style.scale
    side = max(1, int(modules_px * LOGO_WIDTH_FRACTION))
    return side, (symbol_px - side) // 2


def render_png(content: str, style: QrStyle) -> bytes:
    symbol = make_symbol(content, style)
    buf = io.BytesIO()
    symbol.save(
        buf, kind="png", scale=style.scale, border=style.border, dark=style.foreground, light=style.background
    )
    if not style.logo_png:
        return buf.getvalue()
    with Image.open(io.BytesIO(buf.getvalue())) as base, Image.open(io.BytesIO(style.logo_png)) as logo:
        canvas = base.convert("RGBA")
        side, offset = _logo_box(style, canvas.width)
        pad = max(1, style.scale // 2)
        canvas.paste(
            Image.new("RGBA", (side + 2 * pad, side + 2 * pad), style.background),
            (offset - pad, offset - pad),
        )
        mark = logo.convert("RGBA")
        mark.thumbnail((side, side), Image.Resampling.LANCZOS)
        canvas.alpha_composite(mark, (offset + (side - mark.width) // 2, offset + (side - mark.height) // 2))
        out = io.BytesIO()
        canvas.convert("RGB").save(out, format="PNG", optimize=True)
    return out.getvalue()


def render_svg(content: str, style: QrStyle) -> bytes:
    symbol = make_symbol(content, style)
    buf = io.BytesIO()
    symbol.save(
        buf,
        kind="svg",
        scale=style.scale,
        border=style.border,
        dark=style.foreground,
        light=style.background,
        xmldecl=False,
        svgclass=None,
        lineclass=None,
    )
    svg = buf.getvalue()
    if not style.logo_png:
        return svg
    width, _ = symbol.symbol_size(scale=style.scale, border=style.border)
    side, offset = _logo_box(style, int(width))
    pad = max(1, style.scale // 2)
    href = "data:image/png;base64," + base64.b64encode(style.logo_png).decode("ascii")
    overlay = (
        f'<rect x="{offset - pad}" y="{offset - pad}" width="{side + 2 * pad}" height="{side + 2 * pad}" '
        f'fill="{style.background}"/>'
        f'<image x="{offset}" y="{offset}" width="{side}" height="{side}" href="{href}" '
        'preserveAspectRatio="xMidYMid meet"/>'
    ).encode("ascii")
    return svg.replace(b"</svg>", overlay + b"</svg>")
