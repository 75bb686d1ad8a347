"""Dagster resources: the data store (paths through the artifact catalogue, the site) and GeoIP."""

from .geoip import GeoIPResource
from .store import VlfStore

__all__ = ["GeoIPResource", "VlfStore"]
