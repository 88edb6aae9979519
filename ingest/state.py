"""Typed application state shared by the handlers."""

from __future__ import annotations

from aiohttp import web
from redis.asyncio import Redis

from ingest.batch_store import BatchStore
from ingest.campaign_source import CampaignSource
from ingest.client_address import ClientAddress
from ingest.config import Settings
from ingest.keyring_source import KeyringSource
from ingest.reference_source import ReferenceSource
from ingest.scan_pipeline import ScanPipeline
from ingest.tokens import TokenStore
from ingest.verifier_source import VerifierSource

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
KEYRING = web.AppKey("keyring", KeyringSource)
BATCHES = web.AppKey("batches", BatchStore)
TOKENS = web.AppKey("tokens", TokenStore)
VERIFIERS = web.AppKey("verifiers", VerifierSource)
REFERENCES = web.AppKey("references", ReferenceSource)
CAMPAIGNS = web.AppKey("campaigns", CampaignSource)
SCANS = web.AppKey("scans", ScanPipeline)
CLIENT_ADDRESS = web.AppKey("client_address", ClientAddress)
