"""The GeoIP country database the report's geographic tables use; optional by design."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from ...analysis.tables.geo import DEFAULT_DB, CountryLookup, GeoIPError, geoip_status

GEOIP_ENV = "VLF_GEOIP_DB"

# (path, mtime_ns, size, ranges_dir) -> opened lookup: one reader per database file per process.
_open: dict[tuple[str, int, int, str], CountryLookup] = {}


class GeoIPResource(dg.ConfigurableResource):
    """Where the country ``.mmdb`` is.  ``$VLF_GEOIP_DB`` overrides an empty or default path.
    A missing or broken database never fails a run: :meth:`lookup` answers None and
    :meth:`status` says what to do."""

    path: str = DEFAULT_DB

    def resolved_path(self) -> Path:
        if not self.path or self.path == DEFAULT_DB:
            return Path(os.environ.get(GEOIP_ENV) or self.path or DEFAULT_DB)
        return Path(self.path)

    def lookup(self, ranges_dir: Path | None = None) -> CountryLookup | None:
        """The opened database; with ``ranges_dir``, answering from its IPv4 ranges kept there
        (see :class:`CountryLookup`)."""
        path = self.resolved_path()
        try:
            st = path.stat()
        except OSError:
            return None
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size, str(ranges_dir or ""))
        if key not in _open:
            for stale in [k for k in _open if k[0] == key[0] and k[1:3] != key[1:3]]:  # the file was rebuilt
                _open.pop(stale).close()
            try:
                _open[key] = CountryLookup(path, ranges_dir)
            except GeoIPError:
                return None
        return _open[key]

    def status(self) -> str:
        return geoip_status(self.resolved_path())
