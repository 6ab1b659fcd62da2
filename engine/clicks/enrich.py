"""Turn a RawClick into an EnrichedClick: device, geo, bot/preview, UTM, referer, language, visitor.

Pure given its inputs (the GeoIP database is read-only); used by the worker's click agent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.clicks.bots import classify
from engine.clicks.geo import GeoInfo, GeoResolver
from engine.clicks.models import EnrichedClick, RawClick
from engine.clicks.useragent import parse_user_agent
from engine.clicks.utm import extract_utm, primary_language, referer_domain
from engine.clicks.visitor import VisitorIdFactory

if TYPE_CHECKING:
    from engine.config import Settings


class ClickEnricher:
    """Derives every EnrichedClick field from a RawClick.

    With `store_ip=False` the IP is used for geo and the visitor id, then dropped from the
    output. A raw click without a visitor id gets one from `visitor_ids` when given.
    """

    def __init__(self, geo: GeoResolver, store_ip: bool, visitor_ids: VisitorIdFactory | None = None) -> None:
        self.geo = geo
        self.store_ip = store_ip
        self.visitor_ids = visitor_ids

    @classmethod
    def from_settings(cls, settings: Settings) -> ClickEnricher:
        return cls(
            GeoResolver.from_settings(settings),
            store_ip=settings.store_ip,
            visitor_ids=VisitorIdFactory(settings.secret_key),
        )

    def enrich(self, raw: RawClick, is_unique: bool) -> EnrichedClick:
        device = parse_user_agent(raw.user_agent)
        is_bot, is_preview = classify(raw.user_agent, raw.method, device.is_spider)
        geo = self.geo.lookup(raw.ip) if raw.ip else GeoInfo(raw.country_code, raw.region, raw.city)
        utm = extract_utm(raw.utm)
        visitor = raw.visitor_id
        if not visitor and self.visitor_ids is not None:
            visitor = self.visitor_ids.at(raw.ip, raw.user_agent, raw.ts)
        return EnrichedClick(
            event_id=raw.event_id,
            ts=raw.ts,
            link_id=raw.link_id,
            workspace_id=raw.workspace_id,
            domain=raw.domain,
            short_code=raw.short_code,
            destination=raw.destination,
            rule_id=raw.rule_id,
            variant=raw.variant,
            kind=raw.kind,
            method=raw.method,
            ip=raw.ip if self.store_ip else "",
            user_agent=raw.user_agent,
            referer=raw.referer,
            referer_domain=referer_domain(raw.referer),
            language=primary_language(raw.accept_language),
            visitor_id=visitor,
            is_unique=is_unique,
            is_bot=is_bot,
            is_preview=is_preview,
            country_code=geo.country_code,
            region=geo.region,
            city=geo.city,
            # Automated clients that do not announce themselves as spiders (curl, HTTP libraries,
            # headless browsers) parse as "desktop"; the bot verdict is the better answer.
            device_type="bot" if is_bot else device.device_type,
            browser=device.browser,
            browser_version=device.browser_version,
            os=device.os,
            os_version=device.os_version,
            utm_source=utm.get("utm_source", ""),
            utm_medium=utm.get("utm_medium", ""),
            utm_campaign=utm.get("utm_campaign", ""),
            utm_term=utm.get("utm_term", ""),
            utm_content=utm.get("utm_content", ""),
            qr_code_id=raw.qr_code_id,
            bio_link_id=raw.bio_link_id,
        )
