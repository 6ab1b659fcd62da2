"""QR rendering: decode round trips with zxing-cpp, colours, logo handling, scan markers."""

from __future__ import annotations

import base64
import io
import uuid

import pytest
import segno
import zxingcpp
from PIL import Image

from engine.errors import ValidationFailed
from engine.qr.marker import dynamic_content, parse_qr_marker, qr_marker, scan_marker
from engine.qr.render import (
    MAX_LOGO_BYTES,
    QrStyle,
    decode_logo,
    render_png,
    render_svg,
    validate_color,
    validate_error_correction,
)

URL = "https://lr.example.com/abc1234?qr=" + "A" * 22


def _decode(png: bytes) -> str:
    results = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("RGB"))
    assert results, "no QR code found"
    return results[0].text


def _logo(size: int = 64, colour: str = "#e11d48") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("level", ["L", "M", "Q", "H"])
def test_png_round_trip_at_every_level(level) -> None:
    assert _decode(render_png(URL, QrStyle(error_correction=level, scale=4, border=4))) == URL


def test_png_uses_colours_scale_and_border() -> None:
    png = render_png(URL, QrStyle(foreground="#1E3A8A", background="#FDE68A", scale=5, border=2))
    image = Image.open(io.BytesIO(png)).convert("RGB")
    modules = segno.make(URL, error="m", boost_error=False).symbol_size(scale=1, border=0)[0]
    assert image.size == ((modules + 4) * 5, (modules + 4) * 5)
    assert image.getpixel((0, 0)) == (0xFD, 0xE6, 0x8A)  # quiet zone is the background
    assert image.getpixel((2 * 5, 2 * 5)) == (0x1E, 0x3A, 0x8A)  # finder pattern corner
    assert _decode(png) == URL


def test_logo_forces_h_and_still_decodes() -> None:
    style = QrStyle(error_correction="L", scale=6, logo_png=_logo())
    assert style.effective_error == "H"
    png = render_png(URL, style)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    centre = image.getpixel((image.width // 2, image.height // 2))
    assert centre == (0xE1, 0x1D, 0x48)  # the logo sits in the middle
    assert _decode(png) == URL


def test_svg_matches_the_segno_matrix_and_embeds_the_logo() -> None:
    svg = render_svg(URL, QrStyle(scale=3, border=1, foreground="#112233")).decode()
    size = segno.make(URL, error="m", boost_error=False).symbol_size(scale=3, border=1)[0]
    assert svg.startswith("<svg") and f'width="{size}"' in svg and "#123" in svg
    with_logo = render_svg(URL, QrStyle(scale=3, logo_png=_logo())).decode()
    assert "<image" in with_logo and "data:image/png;base64," in with_logo
    # The logo version is rendered at level H: a bigger symbol than level M for the same data.
    h_size = segno.make(URL, error="h", boost_error=False).symbol_size(scale=3, border=4)[0]
    assert f'width="{h_size}"' in with_logo


def test_decode_logo_accepts_base64_and_data_urls() -> None:
    raw = _logo()
    assert decode_logo(base64.b64encode(raw).decode()) == raw
    assert decode_logo("data:image/png;base64," + base64.b64encode(raw).decode()) == raw


@pytest.mark.parametrize(
    "value",
    [
        "not base64!!",
        base64.b64encode(b"GIF89a....").decode(),
        "data:image/svg+xml;base64," + base64.b64encode(b"<svg/>").decode(),
        base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10).decode(),
        base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_LOGO_BYTES + 1)).decode(),
    ],
)
def test_decode_logo_rejects_bad_input(value) -> None:
    with pytest.raises(ValidationFailed) as err:
        decode_logo(value)
    assert err.value.field == "logo"


def test_colour_and_level_validation() -> None:
    assert validate_color("#a0b1c2", field="c") == "#A0B1C2"
    for bad in ("red", "#abc", "#GGGGGG", "#0000000"):
        with pytest.raises(ValidationFailed):
            validate_color(bad, field="foreground_color")
    assert validate_error_correction("q") == "Q"
    with pytest.raises(ValidationFailed):
        validate_error_correction("X")


def test_scan_marker_round_trip() -> None:
    qr_id = str(uuid.uuid4())
    marker = qr_marker(qr_id)
    assert len(marker) == 22 and parse_qr_marker(marker) == qr_id
    assert scan_marker({"qr": marker}) == qr_id
    assert scan_marker({"qr": "short"}) == "" and scan_marker({}) == ""
    assert parse_qr_marker("!" * 22) is None
    assert dynamic_content("http://s.example/abc", qr_id) == f"http://s.example/abc?qr={marker}"
