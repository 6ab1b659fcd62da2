"""The redirect front's two-part click line (engine.clicks.models.click_prefix + click_line) is the
same wire form as RawClick.dumps: every field, the same values, parsed by the same loader."""

from __future__ import annotations

from dataclasses import fields

import orjson
from hypothesis import given
from hypothesis import strategies as st

from engine.clicks.models import PREFIX_FIELDS, RawClick, click_line, click_prefix

text = st.text(max_size=40)


@given(
    link_id=text, workspace_id=text, domain=text, short_code=text, destination=text,
    method=st.sampled_from(["GET", "HEAD"]), event_id=text,
    ts=st.floats(min_value=0, max_value=4e9, allow_nan=False), rule_id=text, variant=text,
    kind=st.sampled_from(["redirect", "qr"]), ip=text, user_agent=text, referer=text,
    accept_language=text, visitor_id=text, utm=st.dictionaries(text, text, max_size=3),
    qr_code_id=text, country_code=text, region=text, city=text, request_id=text,
)  # fmt: skip
def test_the_line_is_the_raw_click(**values: object) -> None:
    prefix = click_prefix(*(values[name] for name in PREFIX_FIELDS))  # type: ignore[arg-type]
    rest = click_line.__code__.co_varnames[1 : click_line.__code__.co_argcount]
    line = click_line(prefix, *(values[name] for name in rest))  # type: ignore[arg-type]
    expected = RawClick(**values)  # type: ignore[arg-type]
    assert RawClick.loads(line) == expected
    # Not only equal once loaded: the same keys as the dataclass's own serialization, no extras.
    assert orjson.loads(line) == orjson.loads(expected.dumps())


def test_every_raw_click_field_is_in_one_part() -> None:
    per_click = click_line.__code__.co_varnames[1 : click_line.__code__.co_argcount]
    names = {f.name for f in fields(RawClick)}
    assert set(PREFIX_FIELDS) | set(per_click) | {"bio_link_id"} == names
    assert not set(PREFIX_FIELDS) & set(per_click)
