"""Standard Webhooks signing and verification, including the official test vector."""

from __future__ import annotations

import base64

import pytest

from engine.auth import webhook_signing as wh
from engine.errors import Unauthorized, ValidationFailed

# https://github.com/standard-webhooks/standard-webhooks (libraries' shared test vector)
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_official_vector() -> None:
    assert wh.sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG


def test_headers() -> None:
    assert wh.headers(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": "1614265330",
        "webhook-signature": VECTOR_SIG,
    }


def test_generate_secret() -> None:
    secret = wh.generate_webhook_secret()
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 32
    assert len(secret) <= 255  # webhooks.secret VARCHAR(255)
    assert secret != wh.generate_webhook_secret()


def _vector_headers(**overrides: str) -> dict[str, str]:
    headers = wh.headers(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    headers.update(overrides)
    return headers


def test_verify_accepts_the_vector() -> None:
    wh.verify(VECTOR_SECRET, _vector_headers(), VECTOR_BODY, now=VECTOR_TS)
    wh.verify(VECTOR_SECRET, _vector_headers(), VECTOR_BODY, now=VECTOR_TS + 300)
    wh.verify(VECTOR_SECRET, _vector_headers(), VECTOR_BODY, now=VECTOR_TS - 300)


def test_verify_header_names_are_case_insensitive() -> None:
    headers = {k.title(): v for k, v in _vector_headers().items()}
    wh.verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TS)


def test_verify_secret_without_prefix() -> None:
    wh.verify(VECTOR_SECRET.removeprefix("whsec_"), _vector_headers(), VECTOR_BODY, now=VECTOR_TS)


def test_verify_any_of_several_signatures() -> None:
    rotated = wh.sign(wh.generate_webhook_secret(), VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    headers = _vector_headers(**{"webhook-signature": f"v1a,abc {rotated} {VECTOR_SIG}"})
    wh.verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TS)


def _rejected(headers: dict[str, str], body: bytes = VECTOR_BODY, now: float = VECTOR_TS, **kw: int) -> str:
    with pytest.raises(wh.WebhookVerificationError) as exc:
        wh.verify(VECTOR_SECRET, headers, body, now=now, **kw)
    assert isinstance(exc.value, Unauthorized)
    return exc.value.message


def test_verify_rejects_tampered_body() -> None:
    assert "no matching" in _rejected(_vector_headers(), body=b'{"test": 2432232315}')


def test_verify_rejects_other_msg_id() -> None:
    assert "no matching" in _rejected(_vector_headers(**{"webhook-id": "msg_other"}))


def test_verify_rejects_bad_signature() -> None:
    bad = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    assert "no matching" in _rejected(_vector_headers(**{"webhook-signature": bad}))
    assert "no matching" in _rejected(_vector_headers(**{"webhook-signature": VECTOR_SIG[3:]}))
    assert "no matching" in _rejected(_vector_headers(**{"webhook-signature": "v2," + VECTOR_SIG[3:]}))


def test_verify_rejects_signature_for_other_timestamp() -> None:
    assert "no matching" in _rejected(_vector_headers(**{"webhook-timestamp": str(VECTOR_TS + 1)}))


def test_verify_rejects_old_and_future_timestamps() -> None:
    assert "too old" in _rejected(_vector_headers(), now=VECTOR_TS + 301)
    assert "future" in _rejected(_vector_headers(), now=VECTOR_TS - 301)
    assert "too old" in _rejected(_vector_headers(), now=VECTOR_TS + 11, tolerance=10)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_rejects_missing_headers(missing: str) -> None:
    headers = _vector_headers()
    del headers[missing]
    assert "missing" in _rejected(headers)


def test_verify_rejects_non_integer_timestamp() -> None:
    assert "integer" in _rejected(_vector_headers(**{"webhook-timestamp": "yesterday"}))


def test_invalid_secret() -> None:
    with pytest.raises(ValidationFailed) as exc:
        wh.sign("whsec_not base64!", VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    assert exc.value.field == "secret"
