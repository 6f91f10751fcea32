"""The crawler: CISA KEV, NVD CVE API 2.0 and STIX 2.1 feeds into `ingestThreats`."""

from crawler.client import Client, Counts, Retry
from crawler.errors import (
    AuthRefused,
    CrawlerError,
    DeliveryError,
    FeedError,
    Refused,
    Unreachable,
)
from crawler.run import Summary, prepare, send

__all__ = [
    "AuthRefused",
    "Client",
    "Counts",
    "CrawlerError",
    "DeliveryError",
    "FeedError",
    "Refused",
    "Retry",
    "Summary",
    "Unreachable",
    "prepare",
    "send",
]
