"""rwfilter's selection: which hourly archive files to read, from ``--start-date``/``--end-date``
(SiLK's precision rules, :func:`parse_date_range`), ``--type``/``--flowtypes`` and ``--sensors``
(:func:`select_archive_files`).  The type and sensor parsers also serve the per-record tests that
replace selection when the records come from files."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from ...flowtypes import DEFAULT_TYPES, FLOWTYPES, parse_types
from ...site import Site
from ...storage import archive_files, hours_between
from ...silktime import SilkTimeError, parse_silk_time
from .spec import FilterError


def _parse_date(text: str, what: str) -> tuple[datetime, str, bool]:
    """A --start-date/--end-date value -> (hour, precision 'day'|'hour', was epoch seconds).

    SiLK's time syntax (flows/silktime.py; here ``-`` may also separate the date's parts), of which
    the archive selection keeps the day or the hour: finer parts are read and dropped, as rwfilter does."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        seconds = int(text)
        try:
            moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise FilterError(f"{what}: invalid date {text!r}") from None
        precision = "day" if seconds % 86400 == 0 else "hour"
        return moment.replace(minute=0, second=0, microsecond=0), precision, True
    if "/" not in text and "-" not in text:  # a fraction of epoch seconds names no archive hour
        raise FilterError(f"{what}: invalid date {text!r} (expected YYYY/MM/DD[:HH] or epoch seconds)")
    try:
        ms, precision = parse_silk_time(text.replace("-", "/", 2))
    except SilkTimeError as exc:
        raise FilterError(f"{what}: invalid date {text!r} ({exc})") from None
    moment = datetime.fromtimestamp(ms // 1000, tz=timezone.utc).replace(minute=0, second=0, microsecond=0)
    return moment, ("day" if precision == "day" else "hour"), False


def parse_date_range(start: str | None, end: str | None, *, now: datetime | None = None) -> list[datetime]:
    """The archive hours that rwfilter's ``--start-date``/``--end-date`` select (UTC).

    - both at hour precision: every hour from start to end;
    - day-precision start: whole days from start to end, the end's hour is ignored;
    - hour-precision start with a day-precision end: the start's hour is used for the end;
    - start only: that day (day precision) or that hour (hour precision);
    - neither: today (UTC); end without start: an error.

    Epoch seconds: an epoch end makes both hour precision; an epoch start with a YYYY/MM/DD end is
    day precision when divisible by 86400; an epoch start alone is hour precision.
    """
    if end and not start:
        raise FilterError(f"--end-date {end!r} requires --start-date")
    if not start:
        today = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        day = today.replace(hour=0, minute=0, second=0, microsecond=0)
        return [day + timedelta(hours=h) for h in range(24)]
    first, s_prec, s_epoch = _parse_date(start, "--start-date")
    if not end:
        if s_prec == "hour" or s_epoch:
            return [first]
        return [first + timedelta(hours=h) for h in range(24)]
    last, e_prec, e_epoch = _parse_date(end, "--end-date")
    if e_epoch:
        s_prec = e_prec = "hour"
    if s_prec == "day":
        first = first.replace(hour=0)
        last = last.replace(hour=23)
    elif e_prec == "day":
        last = last.replace(hour=first.hour)
    if last < first:
        raise FilterError(f"--end-date {end!r} is before --start-date {start!r}")
    return hours_between(first, last + timedelta(hours=1))


def parse_type_list(types: str | Sequence[int | str] | None, *, what: str = "--type") -> list[int]:
    """Flowtype ids from a ``--type`` value (names or ``all``) or a list of ids/names."""
    if types is None:
        return [i for name in DEFAULT_TYPES for i in parse_types(name)]
    try:
        if isinstance(types, str):
            return parse_types(types)
        out = []
        for t in types:
            if isinstance(t, (int, np.integer)):
                if int(t) not in FLOWTYPES:
                    raise FilterError(f"{what}: unknown flow type id {t}")
                out.append(int(t))
            else:
                out.extend(parse_types(str(t)))
        return out
    except FilterError:
        raise
    except ValueError as exc:
        raise FilterError(f"{what}: {exc}") from None


def parse_flowtypes(text: str) -> list[int]:
    """``--flowtypes=CLASS/TYPE[,...]``; the only class is ``all`` (SiLK's twoway site)."""
    out = []
    for item in (p.strip() for p in str(text).split(",")):
        cls, sep, typ = item.partition("/")
        if not sep or cls != "all":
            raise FilterError(f"--flowtypes: invalid class/type {item!r} (the class is 'all', e.g. all/in)")
        out.extend(parse_type_list(typ, what="--flowtypes"))
    return sorted(set(out))


def parse_sensors(sensors: str | Sequence[int | str] | None, site: Site) -> list[int] | None:
    """Sensor ids from names, ids and id ranges (``S0,S2``, ``0-3``); None means every sensor."""
    if sensors is None:
        return None
    items = [p.strip() for p in sensors.split(",")] if isinstance(sensors, str) else list(sensors)
    ids: list[int] = []
    count = len(site.sensors)
    for item in items:
        if isinstance(item, (int, np.integer)):
            lo = hi = int(item)
        elif item in site.sensors:
            ids.append(site.sensors.index(item))
            continue
        elif re.fullmatch(r"\d+", item):
            lo = hi = int(item)
        elif re.fullmatch(r"\d+-\d+", item):
            lo, hi = (int(p) for p in item.split("-"))
            if lo > hi:
                raise FilterError(f"--sensors: invalid sensor range {item!r}")
        else:
            raise FilterError(f"--sensors: unknown sensor {item!r} (site sensors: {', '.join(site.sensors)})")
        if hi >= count:
            raise FilterError(f"--sensors: unknown sensor id {hi if lo < count else lo} (site has ids 0-{count - 1})")
        ids.extend(range(lo, hi + 1))
    return sorted(set(ids))


def select_archive_files(
    data_dir: str | Path,
    site: Site,
    start: str | None = None,
    end: str | None = None,
    types: str | Sequence[int | str] | None = None,
    sensors: str | Sequence[int | str] | None = None,
    *,
    now: datetime | None = None,
) -> list[Path]:
    """The existing archive files rwfilter's selection switches pick, hour by hour.

    ``types`` defaults to SiLK's default types (in, inweb, inicmp); ``sensors`` to every sensor.
    """
    hours = parse_date_range(start, end, now=now)
    flowtypes = parse_type_list(types)
    sensor_ids = parse_sensors(sensors, site)
    names = None if sensor_ids is None else [site.sensor_name(i) for i in sensor_ids]
    return archive_files(data_dir, hours, flowtypes, names)
