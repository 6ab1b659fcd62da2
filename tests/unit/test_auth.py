"""Unit tests for engine.auth: passwords, API keys, tokens, SecretBox and TOTP."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pyotp
import pytest
from argon2 import PasswordHasher
from hypothesis import given
from hypothesis import strategies as st

from engine.auth import api_key_tokens, crypto, passwords, tokens, totp
from engine.errors import Unauthorized, ValidationFailed

SECRET = "test-secret-key"


# --- passwords -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored_hash() -> str:
    return passwords.hash_password("correct horse battery")


def test_hash_uses_argon2id_with_owasp_parameters(stored_hash: str) -> None:
    assert stored_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_verify_password(stored_hash: str) -> None:
    assert passwords.verify_password(stored_hash, "correct horse battery")
    assert not passwords.verify_password(stored_hash, "correct horse battery ")
    assert not passwords.verify_password(stored_hash, "")


def test_hashes_are_salted(stored_hash: str) -> None:
    assert passwords.hash_password("correct horse battery") != stored_hash


@pytest.mark.parametrize("bad_hash", ["", "plaintext", "$argon2id$v=19$m=1", "$2b$12$abcdefghijklmnop"])
def test_verify_password_never_raises_on_bad_hash(bad_hash: str) -> None:
    assert passwords.verify_password(bad_hash, "whatever1") is False


def test_needs_rehash(stored_hash: str) -> None:
    assert not passwords.needs_rehash(stored_hash)
    weak = PasswordHasher(memory_cost=1024, time_cost=1, parallelism=1).hash("x")
    assert passwords.needs_rehash(weak)
    assert passwords.needs_rehash("not a hash")


@pytest.mark.parametrize("pw", ["12345678", "x" * 1024, "pässwörd"])
def test_password_policy_accepts(pw: str) -> None:
    passwords.validate_password(pw)


@pytest.mark.parametrize("pw", ["", "1234567", "x" * 1025])
def test_password_policy_rejects(pw: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        passwords.validate_password(pw)
    assert exc.value.field == "password"


# --- API keys --------------------------------------------------------------------------------


def test_generated_key_format() -> None:
    key = api_key_tokens.generate_api_key()
    assert key.plaintext.startswith("lr_") and len(key.plaintext) == 41
    assert key.prefix == key.plaintext[:12] and len(key.prefix) == 12
    assert key.key_hash == api_key_tokens.hash_api_key(key.plaintext)
    assert len(key.key_hash) == 64
    assert api_key_tokens.looks_like_api_key(key.plaintext)
    assert key.plaintext not in repr(key)


def test_generated_keys_are_unique() -> None:
    assert len({api_key_tokens.generate_api_key().plaintext for _ in range(200)}) == 200


def test_verify_api_key() -> None:
    key = api_key_tokens.generate_api_key()
    assert api_key_tokens.verify_api_key(key.plaintext, key.key_hash)
    other = api_key_tokens.generate_api_key()
    assert not api_key_tokens.verify_api_key(other.plaintext, key.key_hash)
    assert not api_key_tokens.verify_api_key(key.plaintext, "")


@pytest.mark.parametrize(
    "candidate",
    ["", "lr_", "lr_short", "xx_" + "a" * 38, "lr_" + "!" * 38, "lr_" + "a" * 39, "lrr_abc", "Bearer lr_x"],
)
def test_looks_like_api_key_rejects_malformed(candidate: str) -> None:
    assert not api_key_tokens.looks_like_api_key(candidate)


@given(position=st.integers(min_value=3, max_value=40), replacement=st.sampled_from("0aZ9zA"))
def test_any_single_character_change_breaks_the_checksum(position: int, replacement: str) -> None:
    plaintext = api_key_tokens.generate_api_key().plaintext
    if plaintext[position] == replacement:
        return
    mutated = plaintext[:position] + replacement + plaintext[position + 1 :]
    assert not api_key_tokens.looks_like_api_key(mutated)


def test_validate_scopes() -> None:
    assert api_key_tokens.validate_scopes(["links:write", "links:read", "links:write"]) == [
        "links:read",
        "links:write",
    ]
    assert api_key_tokens.validate_scopes([]) == []
    with pytest.raises(ValidationFailed) as exc:
        api_key_tokens.validate_scopes(["links:read", "links:admin", "root"])
    assert exc.value.field == "scopes"
    assert "links:admin" in exc.value.message and "root" in exc.value.message


@pytest.mark.parametrize(
    ("granted", "needed", "allowed"),
    [
        (["links:read"], "links:read", True),
        (["links:read"], "links:write", False),
        (["links:write"], "links:read", True),
        (["domains:write"], "domains:read", True),
        (["webhooks:write"], "webhooks:read", True),
        (["analytics:read"], "links:read", False),
        (["workspace:read"], "workspace:admin", False),
        (["workspace:admin"], "links:write", True),
        (["workspace:admin"], "webhooks:write", True),
        (["workspace:admin"], "workspace:read", True),
        (["workspace:admin"], "billing:admin", False),
        (["billing:admin"], "workspace:admin", False),
        (["billing:admin"], "billing:admin", True),
        ([], "links:read", False),
    ],
)
def test_scope_allows(granted: list[str], needed: str, allowed: bool) -> None:
    assert api_key_tokens.scope_allows(granted, needed) is allowed


# --- access tokens ---------------------------------------------------------------------------

NOW = 1_700_000_000


def _forge(claims: dict[str, object], *, key: bytes | str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, tokens._signing_key(SECRET) if key is None else key, algorithm=algorithm)


def _valid_claims(**overrides: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "iss": "linkrift",
        "aud": "linkrift-api",
        "sub": "user-1",
        "sid": "session-1",
        "iat": NOW,
        "exp": NOW + 900,
        "jti": "abc",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_access_token_round_trip() -> None:
    token = tokens.issue_access_token(SECRET, "user-1", "session-1", now=NOW)
    claims = tokens.decode_access_token(SECRET, token, now=NOW + 899)
    assert claims.user_id == "user-1" and claims.session_id == "session-1"
    assert claims.issued_at == NOW and claims.expires_at == NOW + 900
    assert claims.token_id
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_access_token_default_clock() -> None:
    token = tokens.issue_access_token(SECRET, "u", "s")
    assert tokens.decode_access_token(SECRET, token).user_id == "u"


def test_access_tokens_get_distinct_jti() -> None:
    a = tokens.issue_access_token(SECRET, "u", "s", now=NOW)
    b = tokens.issue_access_token(SECRET, "u", "s", now=NOW)
    assert tokens.decode_access_token(SECRET, a, now=NOW).token_id != (
        tokens.decode_access_token(SECRET, b, now=NOW).token_id
    )


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_signing_key_is_derived_not_the_raw_secret() -> None:
    token = tokens.issue_access_token(SECRET, "u", "s", now=NOW)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, SECRET, algorithms=["HS256"], audience="linkrift-api")


def _assert_rejected(token: str, fragment: str, now: float = NOW + 1) -> None:
    with pytest.raises(Unauthorized) as exc:
        tokens.decode_access_token(SECRET, token, now=now)
    assert fragment in exc.value.message


def test_expired_token_rejected() -> None:
    token = tokens.issue_access_token(SECRET, "u", "s", ttl=60, now=NOW)
    _assert_rejected(token, "expired", now=NOW + 60)


def test_token_from_the_future_rejected() -> None:
    _assert_rejected(_forge(_valid_claims(iat=NOW + 600, exp=NOW + 1500)), "future")


def test_wrong_secret_rejected() -> None:
    token = tokens.issue_access_token("another-secret", "u", "s", now=NOW)
    _assert_rejected(token, "signature")


def test_wrong_audience_rejected() -> None:
    _assert_rejected(_forge(_valid_claims(aud="someone-else")), "audience")


def test_wrong_issuer_rejected() -> None:
    _assert_rejected(_forge(_valid_claims(iss="evil")), "issuer")


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "sid", "aud", "iss", "jti"])
def test_missing_claim_rejected(claim: str) -> None:
    _assert_rejected(_forge(_valid_claims(**{claim: None})), "")


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_non_integer_time_claim_rejected(claim: str) -> None:
    with pytest.raises(Unauthorized):
        tokens.decode_access_token(SECRET, _forge(_valid_claims(**{claim: "soon"})), now=NOW + 1)


def test_other_hmac_algorithm_rejected() -> None:
    _assert_rejected(_forge(_valid_claims(), key=b"k" * 64, algorithm="HS512"), "algorithm")


def test_alg_none_rejected() -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(_valid_claims()).encode()).rstrip(b"=").decode()
    _assert_rejected(f"{header}.{body}.", "")


def test_tampered_payload_rejected() -> None:
    token = tokens.issue_access_token(SECRET, "user-1", "s", now=NOW)
    header, _, sig = token.split(".")
    forged_body = _forge(_valid_claims(sub="admin")).split(".")[1]
    _assert_rejected(f"{header}.{forged_body}.{sig}", "signature")


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "lrr_notajwt"])
def test_garbage_rejected(garbage: str) -> None:
    _assert_rejected(garbage, "malformed")


def test_opaque_tokens() -> None:
    refresh = tokens.new_refresh_token()
    one_time = tokens.new_one_time_token()
    assert refresh.startswith("lrr_") and len(refresh) == 4 + 43
    assert one_time.startswith("lro_") and len(one_time) == 4 + 43
    assert refresh != tokens.new_refresh_token()
    assert tokens.hash_token(refresh) == tokens.hash_token(refresh)
    assert len(tokens.hash_token(refresh)) == 64 and tokens.hash_token(refresh) != tokens.hash_token(one_time)


# --- SecretBox -------------------------------------------------------------------------------


def test_secretbox_round_trip_fits_the_column() -> None:
    box = crypto.SecretBox(SECRET)
    secret = totp.new_totp_secret()
    sealed = box.encrypt(secret)
    assert secret not in sealed
    assert len(sealed) <= 255  # users.two_factor_secret VARCHAR(255)
    assert box.decrypt(sealed) == secret
    assert box.encrypt(secret) != sealed  # random IV


def test_secretbox_detects_tampering() -> None:
    box = crypto.SecretBox(SECRET)
    sealed = box.encrypt("JBSWY3DPEHPK3PXP")
    raw = bytearray(base64.urlsafe_b64decode(sealed))
    raw[40] ^= 1
    with pytest.raises(crypto.DecryptionFailed):
        box.decrypt(base64.urlsafe_b64encode(bytes(raw)).decode())
    with pytest.raises(crypto.DecryptionFailed):
        box.decrypt("not a token")


def test_secretbox_wrong_key() -> None:
    sealed = crypto.SecretBox(SECRET).encrypt("x")
    with pytest.raises(crypto.DecryptionFailed):
        crypto.SecretBox("other").decrypt(sealed)


def test_secretbox_key_rotation() -> None:
    old = crypto.SecretBox("old-secret").encrypt("totp-secret")
    rotated_box = crypto.SecretBox("new-secret", ["old-secret"])
    assert rotated_box.decrypt(old) == "totp-secret"
    resealed = rotated_box.rotate(old)
    assert crypto.SecretBox("new-secret").decrypt(resealed) == "totp-secret"
    with pytest.raises(crypto.DecryptionFailed):
        crypto.SecretBox("old-secret").decrypt(rotated_box.encrypt("fresh"))


def test_derive_key_separates_purposes() -> None:
    assert crypto.derive_key(SECRET, "a") != crypto.derive_key(SECRET, "b")
    assert crypto.derive_key(SECRET, "a") == crypto.derive_key(SECRET, "a")
    assert len(crypto.derive_key(SECRET, "a")) == 32
    with pytest.raises(ValueError):
        crypto.derive_key("", "a")


# --- TOTP ------------------------------------------------------------------------------------

# RFC 6238 appendix B, SHA-1 seed "12345678901234567890"; 6-digit codes are the last 6 digits.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()


@pytest.mark.parametrize(
    ("at", "code"), [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")]
)
def test_totp_rfc6238_vectors(at: int, code: str) -> None:
    assert totp.verify_totp(RFC_SECRET, code, None, now=at) == at // 30


def test_totp_window_is_plus_minus_one_step() -> None:
    secret = totp.new_totp_secret()
    gen = pyotp.TOTP(secret)
    step = NOW // 30
    for offset in (-1, 0, 1):
        assert totp.verify_totp(secret, gen.at((step + offset) * 30), None, now=NOW) == step + offset
    for offset in (-2, 2):
        assert totp.verify_totp(secret, gen.at((step + offset) * 30), None, now=NOW) is None


def test_totp_code_is_never_accepted_twice() -> None:
    secret = totp.new_totp_secret()
    code = pyotp.TOTP(secret).at(NOW)
    used = totp.verify_totp(secret, code, None, now=NOW)
    assert used == NOW // 30
    assert totp.verify_totp(secret, code, used, now=NOW) is None
    assert totp.verify_totp(secret, code, used, now=NOW + 30) is None
    # A code from an earlier step than the last used one is rejected even inside the window.
    earlier = pyotp.TOTP(secret).at(NOW - 30)
    assert totp.verify_totp(secret, earlier, used, now=NOW) is None
    later = pyotp.TOTP(secret).at(NOW + 30)
    assert totp.verify_totp(secret, later, used, now=NOW + 30) == used + 1


@pytest.mark.parametrize("bad", ["", "12345", "1234567", "12a456", "١٢٣٤٥٦", "12 345", "-12345"])
def test_totp_malformed_codes(bad: str) -> None:
    assert totp.verify_totp(RFC_SECRET, bad, None, now=59) is None


def test_totp_tolerates_surrounding_whitespace() -> None:
    assert totp.verify_totp(RFC_SECRET, " 287082\n", None, now=59) == 1


def test_totp_default_clock() -> None:
    secret = totp.new_totp_secret()
    step = totp.verify_totp(secret, pyotp.TOTP(secret).now(), None)
    assert step is not None and abs(step - time.time() // 30) <= 1


def test_new_totp_secret() -> None:
    secret = totp.new_totp_secret()
    assert len(base64.b32decode(secret)) == 20
    assert secret != totp.new_totp_secret()


def test_provisioning_uri_and_qr() -> None:
    uri = totp.provisioning_uri(RFC_SECRET, "ana@example.com")
    assert uri == f"otpauth://totp/LinkRift:ana%40example.com?secret={RFC_SECRET}&issuer=LinkRift"
    svg = totp.provisioning_qr_svg(uri)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")


def test_recovery_codes() -> None:
    codes = totp.generate_recovery_codes()
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        assert len(code) == 9 and code[4] == "-"
        assert set(code.replace("-", "")) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert len(totp.generate_recovery_codes(3)) == 3


def test_consume_recovery_code() -> None:
    codes = totp.generate_recovery_codes(3)
    hashes = totp.hash_recovery_codes(codes)
    assert hashes == [tokens.hash_token(c) for c in codes]
    remaining = totp.consume_recovery_code(codes[1], hashes)
    assert remaining == [hashes[0], hashes[2]]
    assert remaining is not None
    assert totp.consume_recovery_code(codes[1], remaining) is None  # single use
    # Accepted without the dash, in upper case, with spaces around.
    assert totp.consume_recovery_code(f"  {codes[0].replace('-', '').upper()} ", remaining) == [hashes[2]]


@pytest.mark.parametrize("bad", ["", "abcd-efg", "abcd-efgh1", "abcd_efgh", "0000-1111"])
def test_consume_recovery_code_rejects_malformed(bad: str) -> None:
    hashes = totp.hash_recovery_codes(totp.generate_recovery_codes(2))
    assert totp.consume_recovery_code(bad, hashes) is None


def test_hash_recovery_codes_rejects_non_codes() -> None:
    with pytest.raises(ValueError):
        totp.hash_recovery_codes(["not-a-code"])
