"""The site simulator: files, determinism, exact ground truth and the study's populations."""

from __future__ import annotations

import ipaddress
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlf_dagster.flows.flags import ACK, FIN, PSH, SYN
from vlf_dagster.flows.schema import FLOW_SCHEMA, MS_PER_HOUR, check_schema
from vlf_dagster.flows.site import site_from_mapping
from vlf_dagster.flows.storage import hour_ms, hours_between, landing_dir
from vlf_dagster.simulate import POPULATIONS, SimulationConfig, SimulationError, SimulationSummary, simulate

START = "2006-04-01T00:00"
DAYS = 2
SOURCES = 3000
SEED = 7
SESSION = FIN | SYN | PSH | ACK


def make_site(network="10.1.24.0/22", days=DAYS):
    start = datetime(2006, 4, 1, tzinfo=timezone.utc)
    return site_from_mapping(
        {"internal_networks": [network], "start": START, "end": (start + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M")}
    )


def inside_mask(ips, network="10.1.24.0/22"):
    net = ipaddress.ip_network(network)
    return (np.asarray(ips, dtype=np.uint32) & np.uint32(int(net.netmask))) == np.uint32(int(net.network_address))


def all_files(base: Path) -> dict[str, bytes]:
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def load_flows(summary: SimulationSummary) -> pd.DataFrame:
    frames = []
    for path in summary.landing_files:
        frame = pq.read_table(path).to_pandas()
        frame["file"] = str(path)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    base = tmp_path_factory.mktemp("sim")
    summary = simulate(make_site(), SimulationConfig(days=DAYS, sources=SOURCES, seed=SEED), base)
    flows = load_flows(summary)
    truth = pq.read_table(summary.ground_truth_path).to_pandas()
    facts = json.loads((base / "sim" / "summary.json").read_text())
    src_in, dst_in = inside_mask(flows.sIP), inside_mask(flows.dIP)
    inbound = flows[~src_in & dst_in]
    outbound = flows[src_in & ~dst_in]
    pop = truth.set_index("sIP").population
    inbound = inbound.assign(population=inbound.sIP.map(pop).to_numpy())
    return dict(base=base, summary=summary, flows=flows, truth=truth, facts=facts, inbound=inbound, outbound=outbound)


# --- files ---------------------------------------------------------------------------------------


def test_one_landing_file_per_hour_with_the_flow_schema(sim):
    summary, flows = sim["summary"], sim["flows"]
    site = make_site()
    hours = hours_between(site.start, site.start + timedelta(days=DAYS))
    assert summary.landing_files == [landing_dir(sim["base"], h) / "sim.parquet" for h in hours]
    assert summary.hours == len(hours) == 24 * DAYS
    for hour, path in zip(hours, summary.landing_files):
        table = pq.read_table(path)
        check_schema(table, source=str(path))
        assert table.schema.metadata == FLOW_SCHEMA.metadata
        t = table.column("sTime").to_numpy()
        assert len(t) > 0
        assert (np.diff(t) >= 0).all(), "rows are sorted by sTime"
        assert t.min() >= hour_ms(hour) and t.max() < hour_ms(hour) + MS_PER_HOUR
    assert (flows.flowtype == 0).all() and (flows.sensor == 0).all()
    assert len(flows) == summary.flows == summary.inbound_flows + summary.outbound_flows
    assert summary.inbound_flows == len(sim["inbound"]) and summary.outbound_flows == len(sim["outbound"])
    assert len(sim["inbound"]) + len(sim["outbound"]) == len(flows), "no inside-inside or outside-outside flows"


def test_field_values_are_plausible(sim):
    flows = sim["flows"]
    assert (flows.packets >= 1).all()
    assert (flows.bytes >= flows.packets).all()
    ordinary = flows.protocol.isin([1, 6, 17])
    assert (flows.bytes[ordinary] >= 20 * flows.packets[ordinary]).all()
    assert (flows.duration <= 60000).all()
    assert (flows.duration[flows.packets == 1] == 0).all()
    icmp = flows[flows.protocol == 1]
    assert (icmp.sPort == 0).all()
    assert set((icmp.dPort // 256).unique()) <= {3, 8, 11}
    udp_icmp = flows.protocol != 6
    assert (flows["flags"][udp_icmp] == 0).all()
    tcp = flows[flows.protocol == 6]
    assert ((tcp.initialFlags | tcp.sessionFlags) == tcp["flags"]).all()
    # queries come from ephemeral ports (TCP backscatter replies come from the victim's service port,
    # answerers answer from theirs)
    inbound = sim["inbound"]
    queries = inbound[inbound.protocol.isin([6, 17]) & ~inbound.population.isin(["backscatter", "vlf_answerer"])]
    assert (queries.sPort >= 1024).all()
    site = make_site()
    assert flows.sTime.min() >= hour_ms(site.start)
    assert flows.sTime.max() < hour_ms(site.start + timedelta(days=DAYS))


def test_same_seed_same_bytes_other_seed_other_data(sim, tmp_path):
    config = SimulationConfig(days=DAYS, sources=SOURCES, seed=SEED)
    again = simulate(make_site(), config, tmp_path / "again")
    assert all_files(tmp_path / "again") == all_files(sim["base"])
    other = simulate(make_site(), SimulationConfig(days=DAYS, sources=SOURCES, seed=SEED + 1), tmp_path / "other")
    assert other.ground_truth_path.read_bytes() != again.ground_truth_path.read_bytes()
    assert other.landing_files[0].read_bytes() != again.landing_files[0].read_bytes()
    assert other.sources == again.sources == SOURCES


def test_rerun_with_shorter_window_leaves_no_stale_hours(tmp_path):
    simulate(make_site(days=2), SimulationConfig(days=2, sources=200, seed=1), tmp_path)
    summary = simulate(make_site(days=1), SimulationConfig(days=1, sources=200, seed=1), tmp_path)
    on_disk = sorted((tmp_path / "landing").glob("dt=*/hour=*/sim.parquet"))
    assert on_disk == sorted(summary.landing_files) and len(on_disk) == 24


def test_invalid_config_is_refused(tmp_path):
    with pytest.raises(SimulationError):
        simulate(make_site(), SimulationConfig(days=0, sources=10), tmp_path)
    with pytest.raises(SimulationError):
        simulate(make_site(), SimulationConfig(days=1, sources=0), tmp_path)


# --- ground truth -----------------------------------------------------------------------------


def test_ground_truth_matches_the_landing_files(sim):
    truth, inbound = sim["truth"], sim["inbound"]
    assert list(truth.columns) == ["sIP", "population", "flows", "destinations", "protocol", "port", "target_live"]
    schema = pq.read_schema(sim["summary"].ground_truth_path)
    assert [str(schema.field(c).type) for c in schema.names] == ["uint32", "string", "int64", "int64", "uint8", "uint16", "bool"]
    assert len(truth) == truth.sIP.nunique() == SOURCES
    recomputed = inbound.groupby("sIP").agg(flows=("dIP", "size"), destinations=("dIP", "nunique"))
    joined = truth.set_index("sIP").join(recomputed, rsuffix="_landing", how="outer")
    assert joined.flows_landing.notna().all() and joined.flows.notna().all()
    assert (joined.flows == joined.flows_landing).all()
    assert (joined.destinations == joined.destinations_landing).all()
    # the pipeline's VLF-fd set, computed from the flows, is exactly the ground truth's
    vlf_fd = set(recomputed.index[(recomputed.flows <= 10) & (recomputed.destinations == 1)])
    assert vlf_fd == set(truth.sIP[(truth.flows <= 10) & (truth.destinations == 1)])
    # main protocol and port are the most frequent of the source's inbound flows
    mode = inbound.groupby(["sIP", "protocol", "dPort"]).size().rename("n").reset_index()
    mode = mode.sort_values(["sIP", "n", "protocol", "dPort"], ascending=[True, False, True, True]).drop_duplicates("sIP")
    mode = mode.set_index("sIP").reindex(truth.sIP)
    assert (mode.protocol.to_numpy() == truth.protocol.to_numpy()).all()
    assert (mode.dPort.to_numpy() == truth.port.to_numpy()).all()
    assert set(truth.population) <= set(POPULATIONS)
    assert sim["summary"].populations == truth.population.value_counts().reindex(POPULATIONS, fill_value=0).to_dict()


def test_target_live_means_every_destination_is_a_live_host(sim):
    truth, inbound, outbound = sim["truth"], sim["inbound"], sim["outbound"]
    live = set(outbound.sIP)
    assert set(sim["facts"]["live_hosts"]) == {str(ipaddress.IPv4Address(int(a))) for a in live}
    all_live = inbound.assign(live=inbound.dIP.isin(live)).groupby("sIP").live.all()
    assert (all_live.reindex(truth.sIP).to_numpy() == truth.target_live.to_numpy()).all()


def test_outside_sources_are_public_and_never_inside(sim):
    ips = sim["truth"].sIP.to_numpy().astype(np.uint32)
    assert not inside_mask(ips).any()
    first = ips >> 24
    assert (ips != 0).all()
    assert not np.isin(first, [0, 10, 127]).any()
    assert (first < 224).all()
    # inside-originated traffic never creates outside sources
    assert set(sim["inbound"].sIP) == set(sim["truth"].sIP)


# --- the study's proportions ---------------------------------------------------------------------


def test_population_proportions_follow_the_study(sim):
    truth, inbound = sim["truth"], sim["inbound"]
    n = len(truth)
    assert 0.45 <= (truth.flows == 1).sum() / n <= 0.53
    vlf = truth[truth.flows <= 10]
    assert 0.88 <= len(vlf) / n <= 0.93
    assert (vlf.destinations == 1).mean() >= 0.90
    assert 0.005 <= (truth.flows > 100).mean() <= 0.01
    multi = vlf[vlf.destinations > 1]
    assert (multi.destinations <= np.minimum(multi.flows, 5)).all()
    # flows cluster in time: ~90% of sources are seen in 1..5 distinct hours
    hours = inbound.assign(hour=inbound.sTime // MS_PER_HOUR).groupby("sIP").hour.nunique()
    assert 0.85 <= (hours <= 5).mean() <= 0.95
    # VLF populations only have 1..10 flows; scanners sweep whole /24s; heavy populations have > 10
    vlf_pops = [p for p in POPULATIONS if p.startswith("vlf_")] + ["backscatter", "other_proto", "near_match"]
    assert truth[truth.population.isin(vlf_pops)].flows.between(1, 10).all()
    assert (truth[truth.population.isin(["client", "p2p_peer", "game_client", "scanner"])].flows > 10).all()
    scanners = truth[truth.population == "scanner"]
    assert len(scanners) > 0 and (scanners.flows % 256 == 0).all() and (scanners.destinations == scanners.flows).all()
    for population in POPULATIONS:
        assert (truth.population == population).sum() >= 1, population
    assert 3 <= (truth.population == "other_proto").sum() <= 16


def test_targeted_ports_always_hit_or_always_miss_one_address(sim):
    inbound, outbound, truth = sim["inbound"], sim["outbound"], sim["truth"]
    live = set(outbound.sIP)
    for population, expect_live in (("vlf_targeted_hit", True), ("vlf_targeted_miss", False)):
        flows = inbound[inbound.population == population]
        assert len(flows) > 0
        for (protocol, port), group in flows.groupby(["protocol", "dPort"]):
            assert group.dIP.nunique() == 1, (population, protocol, port)
            assert group.dIP.isin(live).all() == expect_live
            assert group.dIP.isin(live).any() == expect_live, "100% hit or 100% miss"
        assert truth[truth.population == population].target_live.all() == expect_live
    hit = inbound[inbound.population == "vlf_targeted_hit"]
    assert {(6, 35372), (17, 7986)} <= set(zip(hit.protocol, hit.dPort))
    assert set(inbound[inbound.population == "vlf_targeted_miss"].dPort) <= {9272, 47190, 34001, 14662}
    # probes are never answered
    probed = inbound[inbound.population.isin(["vlf_targeted_hit", "vlf_targeted_miss", "vlf_scan", "backscatter"])]
    assert not probed.sIP.isin(outbound.dIP).any()
    # random probes hit live hosts about as often as the network is populated
    scan = inbound[inbound.population == "vlf_scan"]
    assert 0.03 <= scan.dIP.isin(live).mean() <= 0.2
    assert (scan["flags"] == SYN).all()


def _answers(inbound: pd.DataFrame, outbound: pd.DataFrame) -> pd.DataFrame:
    reversed_ = outbound.rename(columns={"sIP": "dIP", "dIP": "sIP", "sPort": "dPort", "dPort": "sPort"})
    reversed_ = reversed_.assign(answer_id=outbound.index)
    pairs = inbound.assign(query_id=inbound.index).merge(reversed_, on=["sIP", "dIP", "sPort", "dPort", "protocol"], suffixes=("", "_answer"))
    delta = pairs.sTime_answer - pairs.sTime
    return pairs[(delta >= 0) & (delta <= 500)]


def test_answered_flows_have_a_reversed_outbound_flow_within_500_ms(sim):
    inbound, outbound, truth = sim["inbound"], sim["outbound"], sim["truth"]
    sessions = inbound[inbound.population.isin(["client", "vlf_smtp"])]
    assert len(sessions) > 0
    matched = _answers(sessions, outbound)
    assert matched.query_id.nunique() == len(sessions)
    assert (sessions["flags"] == SESSION).all() and (matched.flags_answer == SESSION).all()
    # every answer to an outside source mirrors a query of that source (near matches and the
    # sessions inside hosts open to answerers excepted)
    answers = outbound[outbound.dIP.isin(truth.sIP)]
    near = set(truth.sIP[truth.population == "near_match"])
    answerers = set(truth.sIP[truth.population == "vlf_answerer"])
    proper = answers[~answers.dIP.isin(near | answerers)]
    matched_all = _answers(inbound, proper)
    assert matched_all.answer_id.nunique() == len(proper)
    # near matches: answered from the queried address and port, but to the wrong port
    near_q = inbound[inbound.sIP.isin(near)]
    near_a = answers[answers.dIP.isin(near)]
    assert len(near_q) == len(near_a) > 0
    assert _answers(near_q, near_a).empty
    loose = near_q.merge(near_a, left_on=["sIP", "dIP", "dPort"], right_on=["dIP", "sIP", "sPort"], suffixes=("", "_a"))
    assert len(loose) >= len(near_q)
    assert (loose.dPort_a != loose.sPort).all()


def _opened(inbound: pd.DataFrame, outbound: pd.DataFrame) -> pd.DataFrame:
    """Inbound flows that mirror an outbound flow started 1..500 ms before them (E-originated)."""
    reversed_ = outbound.rename(columns={"sIP": "dIP", "dIP": "sIP", "sPort": "dPort", "dPort": "sPort"})
    pairs = inbound.assign(query_id=inbound.index).merge(
        reversed_.assign(opener_id=outbound.index), on=["sIP", "dIP", "sPort", "dPort", "protocol"], suffixes=("", "_opener")
    )
    lead = pairs.sTime - pairs.sTime_opener
    return pairs[(lead >= 1) & (lead <= 500) & (pairs.sTime // MS_PER_HOUR == pairs.sTime_opener // MS_PER_HOUR)]


def test_inside_hosts_originate_sessions_that_vlf_answerers_answer(sim):
    inbound, outbound, truth, facts = sim["inbound"], sim["outbound"], sim["truth"], sim["facts"]
    answerers = truth[truth.population == "vlf_answerer"]
    assert len(answerers) > 0
    assert answerers.flows.between(1, 10).all() and (answerers.destinations == 1).all() and answerers.target_live.all()
    answers = inbound[inbound.population == "vlf_answerer"]
    openers = outbound[outbound.dIP.isin(answerers.sIP)]
    assert len(answers) == len(openers) == facts["enterprise_sessions"]
    # every answer follows, within 1..500 ms in the same hour, an outbound flow with mirrored addresses and ports
    pairs = _opened(answers, openers)
    assert pairs.query_id.nunique() == len(answers) and pairs.opener_id.nunique() == len(openers)
    assert _answers(answers, openers).empty, "the outside answers; it never starts first"
    # the outbound flow opens the session from an ephemeral port: TCP SYN first (the answer SYN/ACK)
    tcp = pairs[pairs.protocol == 6]
    assert len(tcp) > 0 and (tcp.initialFlags_opener == SYN).all() and (tcp.initialFlags == SYN | ACK).all()
    assert (openers.sPort >= 1024).all()
    # an answerer answers on one service port; TCP ones have one or two flows
    assert (answers.groupby("sIP").sPort.nunique() == 1).all()
    assert (answers[answers.protocol == 6].groupby("sIP").size() <= 2).all()
    # the study's E services, each opened by hosts of its pool, several hosts per service
    services = {f"{'tcp' if pr == 6 else 'udp'}/{port}" for pr, port in zip(openers.protocol, openers.dPort)}
    assert {"tcp/139", "tcp/22", "tcp/6881", "udp/4672", "udp/53"} <= services <= set(facts["enterprise_originated"])
    hosts = openers.groupby(["protocol", "dPort"]).sIP.nunique()
    assert openers.sIP.nunique() >= 10 and (hosts > 1).sum() >= 5
    pools = facts["enterprise_originated"]
    for (pr, port), group in openers.groupby(["protocol", "dPort"]):
        pool = {int(ipaddress.IPv4Address(a)) for a in pools[f"{'tcp' if pr == 6 else 'udp'}/{port}"]}
        assert set(group.sIP) <= pool
    p2p = int(ipaddress.IPv4Address(facts["servers"]["p2p"]))
    assert p2p in set(openers.sIP[openers.dPort.isin([4662, 4672, 6881])])
    # rwmatch with --symmetric-delta pairs them; the originator is the outbound record (E)
    from vlf_dagster.analysis.tables.sessions import matched_ports
    from vlf_dagster.flows.tools.match import match_sessions
    from vlf_dagster.flows.schema import conform

    vlf = set(truth.sIP[(truth.flows <= 10) & (truth.destinations == 1)])
    cols = [f.name for f in FLOW_SCHEMA]
    q = conform(pa.Table.from_pandas(inbound[inbound.sIP.isin(vlf)][cols], preserve_index=False))
    r = conform(pa.Table.from_pandas(outbound[outbound.dIP.isin(vlf)][cols], preserve_index=False))
    matched = match_sessions(q, r, 2000, symmetric=True, unmatched="q")
    for protocol, ports in ((6, {139, 22}), (17, {4672, 53})):
        table = matched_ports(matched, protocol=protocol, top=40)
        e_rows = table[table["O/E"] == "E"]
        assert ports <= set(e_rows.Port) and (e_rows["E count"] > 1).any()
        assert (table["O/E"] == "O").any()


def test_outside_services_are_answered_by_several_inside_servers(sim):
    inbound, outbound, truth, facts = sim["inbound"], sim["outbound"], sim["truth"], sim["facts"]
    service = inbound[inbound.population == "vlf_service"]
    assert len(service) > 0
    assert truth[truth.population == "vlf_service"].destinations.eq(1).all()
    assert _answers(service, outbound).query_id.nunique() == len(service), "every session is answered"
    pools = facts["outside_services"]
    for (pr, port), group in service.groupby(["protocol", "dPort"]):
        pool = {int(ipaddress.IPv4Address(a)) for a in pools[f"{'tcp' if pr == 6 else 'udp'}/{port}"]}
        assert set(group.dIP) <= pool
    assert {3531, 17306, 7717, 34718, 113} <= set(service.dPort[service.protocol == 6])
    assert {7986, 7717, 53} <= set(service.dPort[service.protocol == 17])
    assert (service.groupby(["protocol", "dPort"]).dIP.nunique() > 1).sum() >= 3
    # a targeted-hit port's host also serves that port
    hit = facts["targeted_hit"]["udp/7986"]
    assert hit in pools["udp/7986"]
    # SMTP goes to 2-3 mail hosts, the SMTP server among them
    smtp = inbound[inbound.population == "vlf_smtp"]
    mail = {int(ipaddress.IPv4Address(a)) for a in facts["mail_hosts"]}
    assert 2 <= len(mail) <= 3 and int(ipaddress.IPv4Address(facts["servers"]["smtp"])) in mail
    assert set(smtp.dIP) == mail


def test_outside_peers_favour_interesting_udp_source_ports(sim):
    inbound, facts = sim["inbound"], sim["facts"]
    planted = [15001, 52525, 65535, 10006, 55555, 4000, 6000, 1024]
    assert facts["interesting_udp_ports"] == planted
    peers = inbound[inbound.population.isin(["p2p_peer", "vlf_p2p", "vlf_service"]) & (inbound.protocol == 17)]
    counts = np.bincount(peers.sPort.to_numpy().astype(np.int64), minlength=65536)
    near = np.zeros(65536, dtype=bool)
    for port in planted:
        near[max(0, port - 3) : port + 4] = True
    others = counts[(np.arange(65536) >= 1024) & ~near]
    median = np.median(others[others > 0])
    for port in planted:
        assert counts[port] >= 5 * median, (port, counts[port], median)
    # only peers: other populations' ephemeral ports stay uniform
    rest = inbound[~inbound.population.isin(["p2p_peer", "vlf_p2p", "vlf_service", "vlf_answerer", "backscatter"])]
    rest = rest[rest.protocol.isin([6, 17])]
    assert rest.sPort.isin(planted).sum() <= len(rest) * 8 / 64512 * 5 + 5


def test_population_descriptions_are_in_the_summary(sim):
    descriptions = sim["facts"]["population_descriptions"]
    assert set(descriptions) == set(POPULATIONS) and all(descriptions.values())
    assert sim["facts"]["populations"]["vlf_answerer"] > 0 and sim["facts"]["populations"]["vlf_service"] > 0


def test_game_server_answers_only_in_its_first_third(sim):
    facts, inbound, outbound = sim["facts"], sim["inbound"], sim["outbound"]
    game = int(ipaddress.IPv4Address(facts["servers"]["game"]))
    site = make_site()
    until = hour_ms(site.start) + (DAYS * 24 * MS_PER_HOUR) // 3
    assert facts["game_server_until"] == datetime.fromtimestamp(until / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    game_flows = inbound[inbound.population.isin(["game_client", "vlf_game"])]
    assert (game_flows.dIP == game).all() and (game_flows.dPort == 27015).all() and (game_flows.protocol == 17).all()
    from_game = outbound[outbound.sIP == game]
    assert len(from_game) > 0 and (from_game.sTime < until).all()
    before = game_flows[game_flows.sTime < until]
    after = game_flows[game_flows.sTime >= until]
    assert len(after) > 0, "clients keep trying"
    window = DAYS * 24 * MS_PER_HOUR
    rate_before = len(before) / (until - hour_ms(site.start))
    rate_after = len(after) / (hour_ms(site.start) + window - until)
    assert rate_after < rate_before / 2
    assert len(_answers(after, outbound)) == 0
    assert _answers(before, outbound).query_id.nunique() == len(before)


def test_live_hosts_are_active_every_hour(sim):
    outbound, facts = sim["outbound"], sim["facts"]
    live = set(outbound.sIP)
    assert 0.08 <= len(live) / 1024 <= 0.12
    game = int(ipaddress.IPv4Address(facts["servers"]["game"]))
    hours = outbound.assign(hour=outbound.sTime // MS_PER_HOUR).groupby("sIP").hour.nunique()
    others = hours.drop(index=game)
    assert (others == 24 * DAYS).all()
    browsing = outbound[outbound.dPort.isin([53, 80, 443])]
    assert set(browsing.protocol) == {6, 17}


def test_other_protocols_are_a_handful_with_implausible_volumes(sim):
    inbound = sim["inbound"]
    other = inbound[inbound.population == "other_proto"]
    assert len(other) > 0 and not other.protocol.isin([1, 6, 17]).any()
    assert (other.sPort == 0).all() and (other.dPort == 0).all()
    assert (other.packets[other.protocol.isin([0, 12, 89])] >= 10**6).all()


def test_a_small_network_is_simulated_too(tmp_path):
    network = "192.0.2.0/24"
    summary = simulate(make_site(network, days=1), SimulationConfig(days=1, sources=500, seed=3), tmp_path)
    flows = load_flows(summary)
    truth = pq.read_table(summary.ground_truth_path).to_pandas()
    inbound = flows[~inside_mask(flows.sIP, network) & inside_mask(flows.dIP, network)]
    counts = inbound.groupby("sIP").dIP.agg(["size", "nunique"]).reindex(truth.sIP)
    assert len(truth) == 500 and not inside_mask(truth.sIP, network).any()
    assert (counts["size"].to_numpy() == truth.flows.to_numpy()).all()
    assert (counts["nunique"].to_numpy() == truth.destinations.to_numpy()).all()
