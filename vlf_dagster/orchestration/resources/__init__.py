from .geoip import GeoIPResource
from .store import VlfStore

__all__ = ["GeoIPResource", "VlfStore"]
