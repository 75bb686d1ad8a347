"""vlf's output against SiLK 3.19.1's, byte for byte, on the same flows (tests/silk_cases.py).

The SiLK side ran once, in bench/silk_golden.py (which builds SiLK from ../shared/silk/), and its
outputs are kept in tests/silk/golden/; this test needs no SiLK.  Cases still known to differ run
as strict xfails with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from silk_cases import CASES, KNOWN, PIPELINES

HERE = Path(__file__).resolve().parent / "silk"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The flows, and vlf's own sIP set and sIP/dPort bags built from them (as SiLK built its own)."""
    from vlf_dagster.cli import main
    work = tmp_path_factory.mktemp("silk")
    flows = HERE / "flows.parquet"
    assert main(["set", f"--sip-file={work / 'sip.set'}", str(flows)]) == 0
    assert main(["bag", f"--sip-flows={work / 'sip.bag'}", f"--dport-flows={work / 'dport.bag'}",
                 f"--bag-file=sensor,flows,{work / 'sensor.bag'}", f"--bag-file=flags,flows,{work / 'flags.bag'}",
                 f"--bag-file=sTime,flows,{work / 'stime.bag'}", str(flows)]) == 0
    assert main(["bag", f"--dip-flows={work / 'dip.bag'}", str(flows)]) == 0
    assert main(["bagtool", "--add", str(work / "sip.bag"), str(work / "dip.bag"), "--output-path", str(work / "sum.bag")]) == 0
    # the mixed IPv4/IPv6 records, through vlf's rwcut-text importer (as rwtuc reads the same text)
    assert main(["import", "--format", "rwcut", "--data-dir", str(work / "mixed"), str(HERE / "mixed.txt")]) == 0
    (mixed,) = (work / "mixed" / "landing").rglob("mixed.txt.parquet")
    assert main(["setbuild", str(HERE / "ipv6.txt"), str(work / "v6.set")]) == 0  # as rwsetbuild built it
    assert main(["setbuild", str(HERE / "setbuild.txt"), str(work / "built.set")]) == 0
    assert main(["setbuild", "--ip-ranges", str(HERE / "setbuild-ranges.txt"), str(work / "ranges.set")]) == 0
    return {"text": HERE / "tuc.txt", "flows": flows, "built_set": work / "built.set", "built_ranges_set": work / "ranges.set", "sip_set": work / "sip.set", "sip_bag": work / "sip.bag", "dport_bag": work / "dport.bag",
            "v6_set": work / "v6.set", "sensor_bag": work / "sensor.bag", "flags_bag": work / "flags.bag",
            "stime_bag": work / "stime.bag", "sip_plus_dip_bag": work / "sum.bag",
            "mixed": mixed}


@pytest.mark.parametrize(
    "name, vlf_args",
    [pytest.param(name, args, id=name, marks=[pytest.mark.xfail(reason=KNOWN[name], strict=True)] if name in KNOWN else [])
     for name, _, args in CASES],
)
def test_same_bytes_as_silk(name, vlf_args, inputs, capsys, monkeypatch):
    from vlf_dagster.cli import main

    monkeypatch.setenv("VLF_SITE_CONFIG", str(HERE / "site.toml"))  # sensors S0 and S1, as SiLK's silk.conf
    monkeypatch.delenv("SILK_IPV6_POLICY", raising=False)
    golden = (HERE / "golden" / f"{name}.txt").read_text()
    capsys.readouterr()
    assert main([arg.format(**{k: str(v) for k, v in inputs.items()}) for arg in vlf_args]) == 0
    out = capsys.readouterr().out
    if out != golden:
        ours, theirs = out.splitlines(), golden.splitlines()
        first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        pytest.fail(f"{name}: line {first + 1} differs (SiLK {len(theirs)} lines, vlf {len(ours)})\n"
                    f"  SiLK: {theirs[first] if first < len(theirs) else '<end>'!r}\n"
                    f"  vlf:  {ours[first] if first < len(ours) else '<end>'!r}")


def test_bagcat_statistics_equal_silk_but_kurtosis(inputs, capsys):
    """Every line of rwbagcat --print-statistics but SiLK's kurtosis ((n-1)^2/n, a slip in its
    formula) and its two lines about tree internals; ours is the textbook excess kurtosis."""
    import pyarrow.parquet as pq

    from vlf_dagster.cli import main

    assert main(["bagcat", "--print-statistics", str(inputs["sip_bag"])]) == 0
    ours = capsys.readouterr().out.splitlines()
    silk = (HERE / "golden" / "bagcat-statistics.txt").read_text().splitlines()
    dropped = ("kurtosis", "nodes allocated", "counter density")
    assert [line for line in silk if line.split(":")[0].strip() not in dropped] == [line for line in ours if not line.strip().startswith("kurtosis")]
    n = int(silk[2].split(":")[1])
    assert float(next(line for line in silk if "kurtosis" in line).split(":")[1]) == float(f"{(n - 1) ** 2 / n:.4g}")
    counts = pq.read_table(inputs["sip_bag"]).column("records").to_numpy().astype(float)
    deviation = counts - counts.mean()
    textbook = (deviation**4).mean() / (deviation**2).mean() ** 2 - 3
    assert next(line for line in ours if "kurtosis" in line) == f"          kurtosis:  {textbook:.4g}"


def test_where_silk_is_the_odd_one_out_vlf_keeps_its_answer(inputs, capsys):
    """Pinned divergences: one bin for the one class (SiLK: one per flowtype); non-ICMP records
    in a blank iType/iCode bin (SiLK: 0|0, which reads as ICMP echo reply); --scidr=0.0.0.0/0
    matches every IPv4 source (SiLK refuses a /0)."""
    from vlf_dagster.cli import main

    flows = str(inputs["flows"])
    assert main(["uniq", "--fields=class", flows]) == 0
    assert capsys.readouterr().out.splitlines() == ["cla|   Records|", "all|      9081|"]
    silk = (HERE / "golden" / "uniq-class.txt").read_text().splitlines()
    assert len(silk) > 2 and {line.split("|")[0] for line in silk[1:]} == {"all"}  # SiLK: a bin per flowtype
    assert main(["uniq", "--fields=itype,icode", "--sort-output", flows]) == 0
    ours = capsys.readouterr().out.splitlines()
    silk = (HERE / "golden" / "uniq-icmp-type-code.txt").read_text().splitlines()
    assert ours[1] == "   |   |      8983|" and silk[1] == "  0|  0|      8983|" and ours[2:] == silk[2:]
    assert main(["filter", "--scidr=0.0.0.0/0", "--print-statistics", flows]) == 0
    assert "Pass       9081." in capsys.readouterr().err


@pytest.mark.parametrize("name, steps", [pytest.param(name, steps, id=name) for name, _, steps in PIPELINES])
def test_pipelines_give_silks_bytes(name, steps, inputs, capsys, monkeypatch, tmp_path):
    """rwsort, rwtuc and rwcat into rwcut, against vlf sort, tuc and cat into vlf cut."""
    from vlf_dagster.cli import main

    monkeypatch.setenv("VLF_SITE_CONFIG", str(HERE / "site.toml"))
    names = {k: str(v) for k, v in inputs.items()}
    previous = None
    for i, step in enumerate(steps):
        out = str(tmp_path / f"step{i}.parquet")
        argv = [arg.format(**names, out=out, **{"in": previous or ""}) for arg in step]
        capsys.readouterr()
        assert main(argv) == 0, argv
        previous = out
    assert capsys.readouterr().out == (HERE / "golden" / f"{name}.txt").read_text()


def test_same_bytes_as_silk_in_a_verbs_own_process(inputs, tmp_path):
    """The console entry point runs a verb with pandas unavailable (pyarrow would import it for
    0.3 s, see cli._PandasUnavailable): every case, in one fresh process set up that way, still
    gives SiLK's bytes, and pandas is never loaded."""
    import json
    import os
    import subprocess
    import sys

    cases = [(name, [arg.format(**{k: str(v) for k, v in inputs.items()}) for arg in args])
             for name, _, args in CASES if name not in KNOWN]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    script = """
import io, json, sys
from vlf_dagster.cli import main, without_pandas
without_pandas()
results = {}
for name, args in json.load(open(sys.argv[1])):
    real, sys.stdout = sys.stdout, io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    try:
        code = main(args)
        sys.stdout.flush()
        results[name] = [code, sys.stdout.buffer.getvalue().decode()]
    finally:
        sys.stdout = real
json.dump({"pandas": "pandas" in sys.modules, "results": results}, open(sys.argv[2], "w"))
"""
    env = {**os.environ, "VLF_SITE_CONFIG": str(HERE / "site.toml")}
    env.pop("SILK_IPV6_POLICY", None)
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "cases.json"), str(tmp_path / "out.json")],
                   env=env, check=True, timeout=600)
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["pandas"] is False
    assert len(out["results"]) == len(cases) > 50
    differ = [name for name, (code, text) in out["results"].items()
              if code != 0 or text != (HERE / "golden" / f"{name}.txt").read_text()]
    assert differ == []
