"""A synthetic monitored /22 with the outside populations of the 2008 VLF study, and its ground truth.

:func:`simulate` writes one landing file per hour (``landing/dt=.../hour=HH/sim.parquet``, the flow
schema, sorted by sTime, flowtype 0: the pipeline classifies) and ``sim/ground_truth.parquet`` with
one row per outside source: its population, its exact inbound flow count and number of distinct
inside destinations, its main protocol and destination port and whether its destinations are live.

The model (the inside hosts, the outside populations and their traffic) is described in
:mod:`.model`.  The steps of a run are the functions here; the work of each is in the modules
beside this one: how the run is cut (:mod:`.window`), the site's addresses (:mod:`.network`), a
chunk's sources (:mod:`.populations`) and their flows (:mod:`.traffic`), the landing files
(:mod:`.writing`) and the ground truth (:mod:`.truth`); ``sim/summary.json`` is written here.
With ``config.campaigns``, port campaigns (:mod:`.campaigns`) are planted on top, as one more chunk.
With ``config.returning``, a share of the sources come back (:mod:`.returns`): each chunk spreads
their flows over visits days apart, and ``sim/returns.parquet`` lists the visits.

Everything is vectorised: per-source attributes are numpy arrays, expanded to flows with
``np.repeat``; the only Python loops run per chunk, population, port table entry, bucket and hour.

Streaming, so the study's 14 months with 12.7 million sources fit in bounded memory: sources are
simulated in chunks of a fixed size (a function of the config: about two days' worth of sources,
4,096 to 131,072), two at a time on threads, each chunk with its own random streams.  A chunk
spills its flows (inbound ones and the outbound flows paired with them, which stay in their hour)
to an Arrow IPC file under ``sim/.spill-*`` with one record batch per landing bucket (a day, fewer
hours for very busy sites) and keeps only its sources' ground-truth rows and counters.  Then,
bucket by bucket, the chunks' batches and the bucket's background traffic are merged, sorted by
sTime and written as hourly files (two writer threads); the spill files are removed.  Peak memory
depends on the sources per day, not on the length of the window.  Outside addresses are ranks of
a keyed permutation of the public IPv4 space (:class:`.network._OutsideAddresses`): distinct without a
global set.  Same site, config and seed give byte-identical files, whatever the threads do.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path

import numpy as np

from .. import progress
from ..flows.schema import PROTO_TCP, int_to_ipv4
from ..flows.site import Site
from ..flows.storage import write_text
from .campaigns import PORT_CAMPAIGN_POPULATION, Campaign, campaign_flows, plan_campaigns
from .model import (
    DNS_SERVER_POOL, ENTERPRISE_SERVICES, INTERESTING_UDP_PORTS, OUTSIDE_SERVICES, POPULATION_DESCRIPTIONS,
    POPULATIONS, TARGETED_HIT_PORTS, TARGETED_MISS_PORTS, WEB_SERVER_POOL, SimulationConfig, SimulationError,
)
from .network import _Inside, _inside, _OutsideAddresses
from .populations import _quota, _sources
from .returns import plant_returns
from .traffic import _background, _expand, _inbound, _outbound
from .truth import RETURNS_NAME, _chunk_truth, _write_ground_truth, _write_returns
from .window import (
    _STREAM_ADDRESSES, _STREAM_BACKGROUND, _STREAM_CAMPAIGNS, _STREAM_CHUNK, _STREAM_RETURNS, _STREAM_SITE, _Plan,
    _plan, _rng,
)
from .writing import _narrow, _remove_stale_hours, _spill, _write_landing

WORKERS = 2  # threads: two chunks are simulated, and two hours written, at a time


@dataclass
class SimulationSummary:
    """What :func:`simulate` wrote: flow and source counts, the files, and the facts of summary.json."""

    flows: int
    inbound_flows: int
    outbound_flows: int
    sources: int
    hours: int
    landing_files: list[Path]
    ground_truth_path: Path
    populations: dict[str, int]  # population -> number of sources
    summary_path: Path | None = None
    details: dict = field(default_factory=dict)
    returns_path: Path | None = None  # sim/returns.parquet, when sources return


@dataclass
class _Context:
    """What every chunk and bucket of a run shares."""

    plan: _Plan
    inside: _Inside
    addresses: _OutsideAddresses
    entropy: list
    spill_dir: Path
    web_pool: np.ndarray  # outside web servers the live hosts browse
    dns_pool: np.ndarray  # outside DNS servers they ask
    returning: float = 0.0  # share of the eligible sources that come back (0: no draw is made)


def simulate(site: Site, config: SimulationConfig, data_dir: Path) -> SimulationSummary:
    """Simulate ``config.days`` days from ``site.start`` and write landing files and ground truth.

    Streaming: sources are simulated chunk by chunk (each chunk with its own random streams); a
    chunk's flows go to a spill file with one Arrow record batch per landing bucket (a day); then
    bucket by bucket the chunks' batches and the bucket's background traffic are merged, sorted and
    written as hourly landing files.  Memory depends on the sources per day, not on the window.
    """
    _check_config(config)
    data_dir = Path(data_dir)
    plan = _plan(site, config)
    entropy = [int(config.seed), 0x564C46]
    inside = _inside(_rng(entropy, _STREAM_SITE), site)
    addresses = _OutsideAddresses(_rng(entropy, _STREAM_ADDRESSES), site)
    web_pool, dns_pool = _server_pools(addresses, int(config.sources))

    (data_dir / "sim").mkdir(parents=True, exist_ok=True)
    with _spill_dir(data_dir / "sim") as spill_dir:
        ctx = _Context(plan, inside, addresses, entropy, spill_dir, web_pool, dns_pool, float(config.returning))
        chunks = _simulate_sources(ctx, int(config.sources))
        campaigns = []
        if config.campaigns:  # extra sources of their own, after the others: those stay as they were
            campaign_chunk, campaigns = _simulate_campaigns(ctx, config, len(chunks))
            chunks.append(campaign_chunk)
        landing_files, n_background = _write_landing(
            data_dir, plan, [c.spill for c in chunks], partial(_bucket_background, ctx), WORKERS
        )
    _remove_stale_hours(data_dir, landing_files)

    truth_path = _write_ground_truth([c.truth for c in chunks], data_dir / "sim" / "ground_truth.parquet")
    returns_path = data_dir / "sim" / RETURNS_NAME
    returns = [c.returns for c in chunks if c.returns is not None]
    if config.returning:
        _write_returns(returns, returns_path)
    else:  # a previous run's visits must not be read as this one's
        returns_path.unlink(missing_ok=True)
    counts = {k: sum(c.counts[k] for c in chunks) for k in chunks[0].counts}
    summary = _summary(site, config, ctx, counts, n_background, landing_files, truth_path, campaigns)
    if config.returning:
        summary.returns_path = returns_path
        summary.details["returning"] = {
            "share": float(config.returning), "sources": int(sum((r["visit"] == 0).sum() for r in returns)),
            "visits": int(sum(len(r["sIP"]) for r in returns)),
        }
    summary.summary_path = _write_summary_json(summary, data_dir)
    return summary


def _check_config(config: SimulationConfig) -> None:
    if config.days < 1:
        raise SimulationError(f"days must be >= 1 (got {config.days})")
    if config.sources < 1:
        raise SimulationError(f"sources must be >= 1 (got {config.sources})")


def _server_pools(addresses: _OutsideAddresses, sources: int) -> tuple[np.ndarray, np.ndarray]:
    """The outside web and DNS servers: the addresses ranked right after the sources'."""
    web_pool = addresses(sources, sources + WEB_SERVER_POOL)
    dns_pool = addresses(sources + WEB_SERVER_POOL, sources + WEB_SERVER_POOL + DNS_SERVER_POOL)
    return web_pool, dns_pool


@contextmanager
def _spill_dir(sim_dir: Path):
    """A fresh directory for the chunks' spill files, removed however the run ends."""
    spill_dir = Path(tempfile.mkdtemp(prefix=".spill-", dir=sim_dir))
    try:
        yield spill_dir
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)


def _simulate_sources(ctx: _Context, S: int) -> list[_Chunk]:
    """Sources 0..S-1, chunk by chunk on :data:`WORKERS` threads: each chunk's spill file, truth and counters."""
    bounds = list(range(0, S, ctx.plan.chunk_sources)) + [S]
    sizes = np.diff(bounds)
    n_other = _quota(min(int(np.clip(round(S * 0.0004), 3, 16)), S), sizes)  # "a handful" in all
    progress.start(S, "sources", "simulating sources")

    def chunk(c: int) -> _Chunk:
        done = _simulate_chunk(ctx, c, bounds[c], bounds[c + 1], int(n_other[c]))
        progress.advance(int(sizes[c]))
        return done

    return _run_in_order(WORKERS, chunk, range(len(sizes)))


def _run_in_order(workers: int, fn, items) -> list:
    """``[fn(i) for i in items]`` on ``workers`` threads, at most ``workers`` items in flight (numpy
    and pyarrow release the GIL in their loops)."""
    items = list(items)
    if workers <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    out, pending = [], deque()
    with ThreadPoolExecutor(workers) as pool:
        for i in items:
            if len(pending) >= workers:
                out.append(pending.popleft().result())
            pending.append(pool.submit(fn, i))
        while pending:
            out.append(pending.popleft().result())
    return out


@dataclass
class _Chunk:
    spill: Path  # Arrow IPC file: one record batch per landing bucket
    truth: dict  # ground-truth columns of the chunk's sources (compact types)
    counts: dict  # counters for the summary
    returns: dict | None = None  # the visits of its returning sources (sIP, visit, start_ms, duration, flows)


def _simulate_chunk(ctx: _Context, c: int, lo: int, hi: int, n_other: int) -> _Chunk:
    """Sources ``lo``..``hi-1``: their inbound flows, the outbound flows paired with them, their truth."""
    plan, inside = ctx.plan, ctx.inside
    streams = np.random.SeedSequence(ctx.entropy, spawn_key=(_STREAM_CHUNK, c)).spawn(5)
    rng_pop, rng_dst, rng_time, rng_traffic, rng_ans = (np.random.default_rng(s) for s in streams)
    source_ip = ctx.addresses(lo, hi)
    sources = _sources(rng_pop, rng_dst, rng_traffic, rng_time, hi - lo, inside, n_other, plan.window, plan.game_end)
    src, fpop, dst_off, t = _expand(rng_time, sources, inside.size, plan.start_ms, plan.window, plan.game_end)
    returns = None
    if ctx.returning:  # its own stream: with 0, no draw is made and nothing moves
        returns = plant_returns(_rng(ctx.entropy, _STREAM_RETURNS, c), ctx.returning, sources.pop, sources.nflows,
                                src, t, plan.start_ms, plan.window)
        returns = _compact_returns(returns, source_ip)
    proto, sport, dport, vol, answers = _inbound(
        rng_traffic, rng_ans, sources, src, fpop, dst_off, t, inside, plan.start_ms, plan.game_end
    )
    del fpop
    # the truth, from the inbound flows themselves
    truth, counts = _chunk_truth(source_ip, sources.pop, sources.nflows, sources.ndest, src, proto, dport, dst_off, t,
                                 inside, plan)
    sip_in = source_ip[src]
    dip_in = (inside.base + dst_off).astype(np.uint32)
    del src, dst_off
    inbound = dict(
        sIP=sip_in, dIP=dip_in, sPort=sport, dPort=dport, protocol=proto, packets=vol.packets, bytes=vol.bytes,
        flags=vol.flags, initialFlags=vol.initial, sessionFlags=vol.session, sTime=t, duration=vol.duration,
    )
    outbound, n_answers, n_opened = _outbound(rng_ans, answers, t, sip_in, dip_in, sport, dport, proto, plan.start_ms,
                                              plan.end_ms)
    counts.update(inbound=len(t), answers=n_answers, opened=n_opened)
    spill = ctx.spill_dir / f"chunk-{c:06d}.arrow"
    _spill(plan, (inbound, outbound), spill)
    return _Chunk(spill, truth, counts, returns)


def _compact_returns(visits: dict, source_ip: np.ndarray) -> dict:
    """A chunk's visits as kept until the end of the run: 20 bytes a visit (the end as ms after the start)."""
    return dict(
        sIP=source_ip[visits["source"]], visit=visits["visit"], start_ms=visits["start_ms"],
        duration=_narrow(visits["end_ms"] - visits["start_ms"], np.uint32, "visit duration"),
        flows=_narrow(visits["flows"], np.uint16, "flows per visit"),
    )


def _simulate_campaigns(ctx: _Context, config: SimulationConfig, c: int) -> tuple[_Chunk, list[Campaign]]:
    """The port campaigns (:mod:`.campaigns`) as one more chunk (number ``c``): their sources are the
    outside addresses ranked after the web and DNS servers', their flows inbound probes nobody answers.
    Its counters count only its inbound flows: the summary's shares stay those of the study's populations."""
    plan = ctx.plan
    rng = _rng(ctx.entropy, _STREAM_CAMPAIGNS)
    campaigns = plan_campaigns(rng, plan, int(config.campaigns), int(config.sources))
    campaigns, nflows, src, proto, sport, dport, dst_off, t, vol = campaign_flows(rng, campaigns, ctx.inside)
    first = int(config.sources) + WEB_SERVER_POOL + DNS_SERVER_POOL
    source_ip = ctx.addresses(first, first + len(nflows))
    pop = np.full(len(nflows), len(POPULATIONS), dtype=np.int64)  # PORT_CAMPAIGN_POPULATION, after the study's
    truth, _ = _chunk_truth(source_ip, pop, nflows, np.ones_like(nflows), src, proto, dport, dst_off, t, ctx.inside, plan)
    inbound = dict(
        sIP=source_ip[src], dIP=(ctx.inside.base + dst_off).astype(np.uint32), sPort=sport, dPort=dport, protocol=proto,
        packets=vol.packets, bytes=vol.bytes, flags=vol.flags, initialFlags=vol.initial, sessionFlags=vol.session,
        sTime=t, duration=vol.duration,
    )
    spill = ctx.spill_dir / f"chunk-{c:06d}.arrow"
    _spill(plan, (inbound,), spill)
    counts = dict(populations=np.zeros(len(POPULATIONS), dtype=np.int64), one_flow=0, vlf=0, vlf_single_destination=0,
                  in_1_to_5_hours=0, inbound=len(t), answers=0, opened=0)
    return _Chunk(spill, truth, counts), campaigns


def _bucket_background(ctx: _Context, b: int) -> dict:
    """The live hosts' own traffic in landing bucket ``b``, from the bucket's random stream."""
    plan = ctx.plan
    return _background(_rng(ctx.entropy, _STREAM_BACKGROUND, b), ctx.inside, plan.bucket(b), plan.start_ms,
                       plan.end_ms, plan.game_end, ctx.web_pool, ctx.dns_pool)


def _summary(site: Site, config: SimulationConfig, ctx: _Context, counts: dict, n_background: int,
             landing_files: list[Path], truth_path: Path, campaigns: list[Campaign] = ()) -> SimulationSummary:
    """The run's totals (the chunks' ``counts`` summed) and facts; the port campaigns' sources are
    counted in ``sources`` and ``populations`` and the campaigns listed in the details when there are any."""
    S = int(config.sources)
    populations = {name: int(n) for name, n in zip(POPULATIONS, counts["populations"])}
    if campaigns:
        populations[PORT_CAMPAIGN_POPULATION] = sum(c.sources for c in campaigns)
        S += populations[PORT_CAMPAIGN_POPULATION]
    n_in = int(counts["inbound"])
    n_out = int(counts["answers"] + counts["opened"] + n_background)
    details = _details(site, config, ctx.plan, ctx.inside, counts, n_background=n_background)
    if campaigns:
        details["port_campaigns"] = [c.as_json() for c in campaigns]
    return SimulationSummary(
        flows=n_in + n_out, inbound_flows=n_in, outbound_flows=n_out, sources=S, hours=len(landing_files),
        landing_files=landing_files, ground_truth_path=truth_path, populations=populations, details=details,
    )


def _write_summary_json(summary: SimulationSummary, data_dir: Path) -> Path:
    """``sim/summary.json``: the summary, its details and its files relative to ``data_dir``."""
    doc = {
        "flows": summary.flows, "inbound_flows": summary.inbound_flows, "outbound_flows": summary.outbound_flows,
        "sources": summary.sources, "hours": summary.hours, "populations": summary.populations, **summary.details,
        "landing_files": [str(p.relative_to(data_dir)) for p in summary.landing_files],
        "ground_truth": str(summary.ground_truth_path.relative_to(data_dir)),
    }
    return write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", data_dir / "sim" / "summary.json")


def _service_key(protocol: int, port: int) -> str:
    return f"{'tcp' if protocol == PROTO_TCP else 'udp'}/{port}"


def _details(site, config, plan: _Plan, inside: _Inside, counts: dict, *, n_background: int) -> dict:
    """Facts about the run for summary.json (the window, the inside hosts and the headline shares)."""
    S = config.sources
    ip = lambda off: int_to_ipv4(inside.base + int(off))  # noqa: E731
    share = lambda n, d: round(float(n / d), 4) if d else 0.0  # noqa: E731
    return {
        "site": site.name,
        "days": config.days,
        "seed": config.seed,
        "start": plan.start.strftime("%Y-%m-%dT%H:%M"),
        "end": plan.end.strftime("%Y-%m-%dT%H:%M"),
        "inside_network": f"{int_to_ipv4(inside.base)}/{32 - int(np.log2(inside.size))}",
        "live_hosts": [ip(o) for o in inside.live],
        "servers": {role: ip(o) for role, o in inside.servers.items()},
        "game_server_until": (plan.start + timedelta(milliseconds=int(plan.game_end))).strftime("%Y-%m-%dT%H:%M:%S"),
        "targeted_hit": {_service_key(pr, port): ip(h) for (pr, port, _), h in zip(TARGETED_HIT_PORTS, inside.hit_hosts)},
        "targeted_miss": {f"tcp/{port}": ip(h) for (_, port, _), h in zip(TARGETED_MISS_PORTS, inside.miss_hosts)},
        "mail_hosts": [ip(o) for o in inside.mail_hosts],
        "enterprise_originated": {
            _service_key(pr, port): [ip(o) for o in pool] for (pr, port, *_), pool in zip(ENTERPRISE_SERVICES, inside.open_pools)
        },
        "outside_services": {
            _service_key(pr, port): [ip(o) for o in pool] for (pr, port, *_), pool in zip(OUTSIDE_SERVICES, inside.service_pools)
        },
        "interesting_udp_ports": [port for port, _ in INTERESTING_UDP_PORTS],
        "population_descriptions": dict(POPULATION_DESCRIPTIONS),
        "answers": int(counts["answers"]),
        "enterprise_sessions": int(counts["opened"]),
        "background_flows": int(n_background),
        "share_one_flow": share(counts["one_flow"], S),
        "share_vlf_flows": share(counts["vlf"], S),
        "share_single_destination_of_vlf": share(counts["vlf_single_destination"], counts["vlf"]),
        "share_in_1_to_5_hours": share(counts["in_1_to_5_hours"], S),
    }
