"""Bot and link-preview classification of a click.

The rule, applied in this order:
  1. is_preview=True  - a link unfurler fetched the URL to render a card in a chat, social or
     collaboration app, or a search engine rendered a snippet of it (`PREVIEW_AGENTS` below),
     or the request was a HEAD (no page is rendered). A preview is never also a bot: it reflects
     a human sharing the link, not a visit.
  2. is_bot=True      - any other automated client: an empty UA, a ua-parser "Spider", or a
     crawlerdetect match (search crawlers, curl, HTTP libraries, headless browsers, monitors).
  3. Neither          - a human visit, including the in-app browsers of these apps (Facebook's
     FBAN/FBAV, Instagram, LINE's "Line/", KakaoTalk's "KAKAOTALK", WeChat's "MicroMessenger"):
     a person opening the link there is a visit, so no preview token may match them.
Applebot is a bot, not a preview: it is Apple's search crawler, while iMessage unfurls with the
"facebookexternalhit/1.1 Facebot Twitterbot/1.0" combination, which rule 1 catches.
"""

from __future__ import annotations

import functools
import re

from crawlerdetect import CrawlerDetect

BOT_CACHE_SIZE = 8192

# One token per unfurler, matched case-insensitively anywhere in the UA (`^` anchors at its start).
# Each line names where the string comes from: the platform's own documentation where it has
# one, otherwise its open-source code or the URL the fetcher puts in its own UA. Platforms whose
# fetcher sends a browser's UA or none we could source (Zoom, Tumblr, WeChat, Google Chat) are not
# listed: their previews count as bots or visits.
PREVIEW_AGENTS: tuple[tuple[str, str], ...] = (
    # Slack: https://api.slack.com/robots ("Slackbot-LinkExpanding 1.0", "Slack-ImgProxy").
    (r"slackbot-linkexpanding", "Slack"),
    (r"slack-imgproxy", "Slack"),
    # Discord: "Discordbot/2.0; +https://discordapp.com", the page its UA points to (no crawler doc).
    (r"discordbot", "Discord"),
    # Telegram: "TelegramBot (like TwitterBot)", as its link-preview fetcher sends it (no doc page).
    (r"telegrambot", "Telegram"),
    # WhatsApp: "WhatsApp/2.x A|i|W", the app's own fetcher. Signal sends "WhatsApp/2" on purpose
    # (Signal-Android's LinkPreviewRepository sets it), so this token covers both.
    (r"^whatsapp/", "WhatsApp, Signal"),
    # Meta (Facebook, Instagram, Messenger, Threads): https://developers.facebook.com/docs/sharing/
    # webmasters/web-crawlers ("facebookexternalhit/1.1", "Facebot", and meta-externalfetcher for
    # user-initiated fetches of one link; meta-externalagent is a training crawler: a bot).
    # Apple's iMessage and LINE ("facebookexternalhit/1.1;line-poker/1.0") and KakaoTalk
    # ("facebookexternalhit/1.1; kakaotalk-scrap/1.0; +https://devtalk.kakao.com/t/scrap/33984",
    # Kakao's own page) send the same token.
    (r"facebookexternalhit", "Meta, iMessage, LINE, KakaoTalk"),
    (r"facebot", "Meta"),
    (r"meta-externalfetcher", "Meta"),
    (r"line-poker", "LINE"),
    (r"kakaotalk-scrap", "KakaoTalk"),
    # X/Twitter: https://developer.x.com/en/docs/x-for-websites/cards/guides/troubleshooting-cards
    # ("Twitterbot/1.0").
    (r"twitterbot", "X/Twitter"),
    # LinkedIn: https://www.linkedin.com/help/linkedin/answer/a521928 ("LinkedInBot/1.0").
    (r"linkedinbot", "LinkedIn"),
    # Pinterest: https://help.pinterest.com/en/business/article/pinterest-crawler
    # ("Pinterest/0.2 (+https://www.pinterest.com/bot.html)", "Pinterestbot/1.0").
    (r"pinterest/0\.", "Pinterest"),
    (r"pinterestbot", "Pinterest"),
    # Reddit: "redditbot/1.0; +http://www.reddit.com/feedback", the page its UA points to.
    (r"redditbot", "Reddit"),
    # Skype and Teams: "SkypeUriPreview Preview/0.5 skype-url-preview@microsoft.com".
    (r"skypeuripreview", "Skype, Teams"),
    # Microsoft (Teams, Outlook, Bing chat): https://aka.ms/MicrosoftPreview ("MicrosoftPreview/2.0");
    # Bing's search-result page snapshots: https://www.bing.com/webmasters/help/which-crawlers-does-
    # bing-use-8c184ec0 ("BingPreview/1.0b").
    (r"microsoftpreview", "Microsoft"),
    (r"bingpreview", "Bing"),
    # Microsoft Office apps check a link before handing it to the browser ("Microsoft Office
    # Existence Discovery", "ms-office"): https://learn.microsoft.com/office/troubleshoot/
    # office-suite-issues/click-hyperlink-to-sso-website
    (r"microsoft office existence discovery", "Microsoft Office"),
    (r"\bms-office\b", "Microsoft Office"),
    # Snapchat: https://developers.snap.com/robots ("Snap URL Preview Service; bot; snapchat").
    (r"snap url preview service", "Snapchat"),
    # Mastodon: "http.rb/x (Mastodon/4.x; +https://instance/)", each server fetching the card
    # (https://docs.joinmastodon.org/entities/PreviewCard).
    (r"\(mastodon/", "Mastodon"),
    # Bluesky: "Bluesky Cardyb/1.1; +mailto:support@bsky.app", its card service cardyb.bsky.app.
    (r"cardyb", "Bluesky"),
    # Matrix/Element: https://element-hq.github.io/synapse/latest/development/url_previews.html
    # (the homeserver fetches previews as "Synapse (bot; +https://github.com/matrix-org/synapse)").
    (r"synapse \(bot;", "Matrix"),
    # Mattermost: the server fetches OpenGraph data with its HTTP service's default UA
    # "Mattermost-Bot/1.1" (server/platform/services/httpservice).
    (r"mattermost-bot/", "Mattermost"),
    # Rocket.Chat: its oEmbed fetcher sends the configured API_Embed_UserAgent (a Chrome string
    # by default) followed by "Rocket.Chat/<version>" (apps/meteor/app/oembed/server).
    (r"rocket\.chat/", "Rocket.Chat"),
    # Viber: the app's own HTTP client, "Viber/20.x CFNetwork/..." (its in-app browser starts
    # with "Mozilla/5.0" and stays a visit). No doc page.
    (r"^viber/", "Viber"),
    # VK: "vkShare; +http://vk.com/dev/Share", the page its UA points to.
    (r"vkshare", "VK"),
    # Embedding services that unfurl for many apps: https://iframely.com/docs/about and
    # Embedly's "Embedly/0.2; +http://support.embed.ly/".
    (r"iframely", "Iframely"),
    (r"embedly", "Embedly"),
)

_PREVIEW_PATTERN = re.compile("|".join(token for token, _ in PREVIEW_AGENTS), re.IGNORECASE)


@functools.cache
def _crawler_detect() -> CrawlerDetect:
    # Compiling crawlerdetect's pattern set is costly; one detector serves every call.
    return CrawlerDetect()


@functools.lru_cache(maxsize=BOT_CACHE_SIZE)
def _classify_agent(ua: str, is_spider: bool) -> tuple[bool, bool]:
    if _PREVIEW_PATTERN.search(ua):
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
