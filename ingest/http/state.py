"""Typed application state shared by the handlers."""

from __future__ import annotations

from aiohttp import web

from ingest.config import Settings
from ingest.http.client_address import ClientAddress
from ingest.http.tokens import TokenStore
from ingest.scan.pipeline import ScanPipeline
from ingest.store.batches import BatchStore
from ingest.store.campaigns import CampaignSource
from ingest.store.keyring import KeyringSource
from ingest.store.references import ReferenceSource
from ingest.store.scripts import AsyncRedis
from ingest.store.verifiers import VerifierSource

SETTINGS = web.AppKey("settings", Settings)
REDIS: web.AppKey[AsyncRedis] = web.AppKey("redis")
KEYRING = web.AppKey("keyring", KeyringSource)
BATCHES = web.AppKey("batches", BatchStore)
TOKENS = web.AppKey("tokens", TokenStore)
VERIFIERS = web.AppKey("verifiers", VerifierSource)
REFERENCES = web.AppKey("references", ReferenceSource)
CAMPAIGNS = web.AppKey("campaigns", CampaignSource)
SCANS = web.AppKey("scans", ScanPipeline)
CLIENT_ADDRESS = web.AppKey("client_address", ClientAddress)
