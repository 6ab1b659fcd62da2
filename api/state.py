"""Typed application state (aiohttp AppKeys) shared by the api's handlers."""

from __future__ import annotations

import asyncpg
import redis.asyncio as redis
from aiohttp import web

from api.analytics_client import AnalyticsClient
from api.click_producer import Emitter
from engine.clicks.visitor import VisitorIdFactory
from engine.config import Settings
from engine.links.cache import LinkResolver, TTLCache
from engine.naming import RedisKeys, Topics

SETTINGS = web.AppKey("settings", Settings)
PG = web.AppKey("pg", asyncpg.Pool)
REDIS = web.AppKey("redis", redis.Redis)
KEYS = web.AppKey("keys", RedisKeys)
TOPICS = web.AppKey("topics", Topics)
EMITTER = web.AppKey("emitter", Emitter)
RESOLVER = web.AppKey("resolver", LinkResolver)
ANALYTICS = web.AppKey("analytics", AnalyticsClient)
VISITORS = web.AppKey("visitors", VisitorIdFactory)
# Host → DomainInfo routing cache; the same object as the resolver's `domains`.
DOMAINS = web.AppKey("domains", TTLCache)
