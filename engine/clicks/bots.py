"""Bot and link-preview classification of a click.

The rule, applied in this order:
  1. is_preview=True  - a link unfurler fetched the URL to render a card in a chat or social app
     (Slack, Twitter/X, Facebook, iMessage, Discord, WhatsApp, Telegram, LinkedIn, Teams/Skype,
     Mastodon, Bluesky, Iframely, Embedly...), or the request was a HEAD (no page is rendered).
     A preview is never also a bot: it reflects a human sharing the link, not a visit.
  2. is_bot=True      - any other automated client: an empty UA, a ua-parser "Spider", or a
     crawlerdetect match (search crawlers, curl, HTTP libraries, headless browsers, monitors).
  3. Neither          - a human visit.
Applebot is a bot, not a preview: it is Apple's search crawler, while iMessage unfurls with the
"facebookexternalhit/1.1 Facebot Twitterbot/1.0" combination, which rule 1 catches.
"""

from __future__ import annotations

import functools
import re

from crawlerdetect import CrawlerDetect

BOT_CACHE_SIZE = 8192

_PREVIEW_AGENTS = re.compile(
    "|".join(
        (
            r"slackbot-linkexpanding",
            r"slack-imgproxy",
            r"twitterbot",
            r"facebookexternalhit",
            r"facebot",
            r"discordbot",
            r"whatsapp/",
            r"telegrambot",
            r"linkedinbot",
            r"skypeuripreview",
            r"microsoftpreview",
            r"iframely",
            r"embedly",
            r"redditbot",
            r"mastodon/",
            r"cardyb",  # Bluesky's card fetcher
            r"vkshare",
        )
    ),
    re.IGNORECASE,
)


@functools.cache
def _crawler_detect() -> CrawlerDetect:
    # Compiling crawlerdetect's pattern set is costly; one detector serves every call.
    return CrawlerDetect()


@functools.lru_cache(maxsize=BOT_CACHE_SIZE)
def _classify_agent(ua: str, is_spider: bool) -> tuple[bool, bool]:
    if _PREVIEW_AGENTS.search(ua):
        return False, True
    # A declared spider needs no crawlerdetect pass (~0.3 ms per new UA).
    return is_spider or bool(_crawler_detect().is_crawler(ua)), False


def classify(ua: str, method: str, is_spider: bool) -> tuple[bool, bool]:
    """(is_bot, is_preview) for a click, following the rule in the module docstring.

    `is_spider` is ua-parser's verdict (DeviceInfo.is_spider) for the same UA.
    """
    if method.upper() == "HEAD":
        return False, True
    ua = ua.strip()
    if not ua:
        return True, False
    return _classify_agent(ua, is_spider)
