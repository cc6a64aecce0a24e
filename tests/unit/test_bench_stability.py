"""tools/bench.py's stability table: per-run resends, CPU per MB, why the slowest was slow.

Also the --pin affinity helper (on this process, restored afterwards) and
the --srtt sampler (on a fake socket).  No transfer runs here: these are
the orchestrator's pure parts.
"""

from __future__ import annotations

import argparse
import os
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import load_tool


def load_bench() -> ModuleType:
    """tools/bench.py as a module (tools/ is not a package)."""
    return load_tool("bench", "kcpsock_bench_tool")


bench = load_bench()


def run(
    mbps: float, cpu: tuple[float, float] = (0.005, 0.005), **counts: float
) -> dict[str, float]:
    """One run's figures as _one_transfer returns them."""
    return {"mbps": mbps, "client_cpu": cpu[0], "server_cpu": cpu[1], **counts}


def test_slow_reason_storm_when_rto_resends_are_half_a_percent() -> None:
    runs = [
        run(120, lost=0, fast=0, sent=22000),
        run(70, lost=630, fast=0, sent=22600, repeat=630),
    ]
    assert bench.slow_reason(runs) == "RTO storm (630)"
    # a handful of resends is not a storm: the CPU figures decide
    runs[1]["lost"] = 20
    assert bench.slow_reason(runs) == "machine"


def test_slow_reason_cpu_or_machine() -> None:
    same = [run(120), run(70, cpu=(0.0055, 0.005))]
    assert bench.slow_reason(same) == "machine"
    heavier = [run(120), run(70, cpu=(0.0070, 0.0060))]
    assert bench.slow_reason(heavier) == "more CPU/MB (x1.30)"
    assert bench.slow_reason([run(100)]) == ""


def test_resends_cell() -> None:
    assert bench._resends(run(1, lost=3, fast=2, repeat=5)) == "3+2/5"
    assert bench._resends(run(1, lost=3, fast=2)) == "3+2"
    assert bench._resends(run(1, repeat=4)) == "?/4"  # a client without counters


def row(pair: str, runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "pair": pair,
        "tree": "",
        "mode": "stream",
        "config": "aes+fec",
        "one-way-runs": [r["mbps"] for r in runs],
        "one-way-failed": 0,
        "one-way-detail": runs,
    }


def test_stability_table_lists_every_run_in_order() -> None:
    runs = [
        run(125, (0.0052, 0.0050), lost=0, fast=0, sent=22258, repeat=0),
        run(73, (0.0061, 0.0055), lost=231, fast=1, sent=22488, repeat=231),
        run(135, (0.0050, 0.0049), lost=0, fast=0, sent=22257, repeat=0),
    ]
    lines = bench.stability([row("kcpsock->kcpsock", runs)]).splitlines()
    assert len(lines) == 3
    assert len(lines[0].split("|")) == len(lines[2].split("|"))  # header and row agree
    cells = [c.strip() for c in lines[2].split("|")]
    assert cells[6] == "125, 73, 135"
    assert cells[7] == "0.54"
    assert cells[8] == "0+0/0, 231+1/231, 0+0/0"
    assert cells[9] == "5.2/5.0, 6.1/5.5, 5.0/4.9"
    assert cells[10] == "RTO storm (231)"
    assert "srtt" not in lines[0]  # only with --srtt


def test_stability_table_srtt_column() -> None:
    runs = [run(100, srtt_mean=4.4, srtt_max=13), run(90)]
    lines = bench.stability([row("kcp-go->kcp-go", runs)]).splitlines()
    assert lines[0].endswith("client srtt mean/max ms |")
    assert len(lines[0].split("|")) == len(lines[1].split("|")) == len(lines[2].split("|"))
    assert lines[2].endswith("| 4/13, ? |")


def test_stability_table_failed_run() -> None:
    r = row("kcp-go->kcpsock", [run(100), run(90)])
    r["one-way-failed"] = 1
    cells = [c.strip() for c in bench.stability([r]).splitlines()[2].split("|")]
    assert cells[6] == "100, 90, 1 failed"
    assert cells[7] == "0.00"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_pinned_sets_and_restores_affinity() -> None:
    before = os.sched_getaffinity(0)
    cpu = min(before)
    with bench._pinned(argparse.Namespace(pin=True), cpu):
        assert os.sched_getaffinity(0) == {cpu}
    assert os.sched_getaffinity(0) == before
    with bench._pinned(argparse.Namespace(pin=False), cpu):
        assert os.sched_getaffinity(0) == before  # without --pin: untouched
    with pytest.raises(KeyError), bench._pinned(argparse.Namespace(pin=True), cpu):
        raise KeyError("boom")
    assert os.sched_getaffinity(0) == before  # restored on an exception too


def test_pin_available_names_what_is_missing() -> None:
    why = bench.pin_available()
    if hasattr(os, "sched_getaffinity") and {0, 1} <= os.sched_getaffinity(0):
        assert why is None
    else:
        assert why is not None and why


class FakeSock:
    """A socket whose srtt climbs 1, 2, 3, ... at each read."""

    def __init__(self) -> None:
        self.reads = 0

    @property
    def srtt(self) -> int:
        self.reads += 1
        return self.reads


def test_srtt_sampler_mean_and_max() -> None:
    sock = FakeSock()
    sampler = bench._SrttSampler(sock, 1)
    # bounded wait for a few samples (the sampler's own 1 ms timer paces it)
    for _ in range(2000):
        if sock.reads >= 3:
            break
        sampler._stop.wait(0.001)
    text = sampler.result()
    fields = dict(f.split("=") for f in text.split())
    n = int(fields["srtt_max"])
    assert n >= 3
    assert float(fields["srtt_mean"]) == pytest.approx((n + 1) / 2)


def test_srtt_sampler_off() -> None:
    sock = FakeSock()
    assert bench._SrttSampler(sock, 0).result() == ""
    assert sock.reads == 0


def test_resends_cell_echo_and_drops() -> None:
    # echo: the client's resends / the server's repeats, then the server's
    # resends / the client's repeats
    echo = run(1, lost=1034, fast=0, srepeat=990, slost=7, sfast=1, repeat=8)
    assert bench._resends(echo) == "1034+0/990 (s 7+1/8)"
    assert bench._resends(run(1, lost=3, fast=0, srepeat=3)) == "3+0/3 (s ?)"
    # drops at the run's sockets or in kcpsock's inbound queues are shown
    assert bench._resends(run(1, lost=5, fast=0, repeat=0, cdrops=4, inbox=1)) == "5+0/0 d 5"


def test_slow_reason_counts_the_echo_servers_rto_resends() -> None:
    runs = [run(120, sent=22000), run(70, lost=20, slost=600, sent=22000)]
    assert bench.slow_reason(runs) == "RTO storm (620)"


def test_socket_watch_reads_drops_and_queues(tmp_path: Any) -> None:
    udp = tmp_path / "udp"
    head = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt"
        "   uid  timeout inode ref pointer drops\n"
    )

    def line(local: int, remote: int, rxq: int, inode: int, drops: int) -> str:
        return (
            f"  1: 0100007F:{local:04X} 0100007F:{remote:04X} 07 00000000:{rxq:08X} 00:00000000"
            f" 00000000  1000        0 {inode} 2 0000000000000000 {drops}\n"
        )

    udp.write_text(
        head
        + line(9000, 0, 4096, 11, 0)  # the server's socket
        + line(40000, 9000, 2048, 12, 3)  # the client's, connected to it
        + line(5000, 0, 99999, 13, 50)  # someone else's
    )
    watch = bench.SocketWatch(9000, path=str(udp))
    watch.sample()
    udp.write_text(head + line(9000, 0, 1024, 11, 2))  # the client has gone
    watch.sample()
    assert watch.figures() == {"sdrops": "2", "srxq": "4", "cdrops": "3", "crxq": "2"}


def test_slow_reason_names_what_came_with_a_storm() -> None:
    runs = [
        run(120, sent=22000, gap=8, swait=18, steal=0, others=0.1),
        run(70, lost=600, sent=22600, gap=48.2, swait=61, steal=3.4, others=0.6),
    ]
    assert bench.slow_reason(runs) == (
        "RTO storm (600; gap 48 ms, server starved 61 ms vs 18, steal 3 %, others 0.6 cores)"
    )
    # nothing beside it worth naming (a CPU wait like the fastest run's)
    runs[1].update(gap=12, swait=24, steal=0.5, others=0.1)
    assert bench.slow_reason(runs) == "RTO storm (600)"


def test_slow_reason_host_steal_then_other_load() -> None:
    fast = run(120, steal=0.5, others=0.1, sdelay=10)
    assert bench.slow_reason([fast, run(70, steal=6.2, others=0.1)]) == "host (steal 6 % vs 0 %)"
    # steal alike in both runs: not what made the slow one slow
    assert bench.slow_reason([run(120, steal=5, others=0.1), run(70, steal=6, others=0.1)]) == (
        "machine"
    )
    assert bench.slow_reason([fast, run(70, steal=0.5, others=0.9)]) == (
        "other load (0.9 cores vs 0.1)"
    )
    # before CPU per MB: other load on the two cores slows the same code down
    heavier = run(70, cpu=(0.0070, 0.0060), steal=0.5, others=0.9)
    assert bench.slow_reason([fast, heavier]).startswith("other load")


def test_stability_table_host_column() -> None:
    runs = [run(100, steal=1.2, others=0.31, gap=7.6, sdelay=40.4, swait=12.2), run(90)]
    lines = bench.stability([row("kcp-go->kcpsock", runs)]).splitlines()
    assert "steal %/others cores/server gap ms/server wait ms (longest)" in lines[0]
    assert len(lines[0].split("|")) == len(lines[1].split("|")) == len(lines[2].split("|"))
    assert lines[2].endswith("| 1/0.3/8/40 (12), ?/?/?/? |")


class FakeProc:
    """A fake /proc: /proc/stat, a server's stat and its threads' schedstat."""

    def __init__(self, root: Any, pid: int) -> None:
        self.root, self.pid = root, pid
        (root / str(pid) / "task" / "1").mkdir(parents=True)
        (root / str(pid) / "task" / "2").mkdir()

    def set(self, ticks: list[int], server_ticks: int, delays_ns: tuple[int, int]) -> None:
        (self.root / "stat").write_text("cpu  " + " ".join(map(str, ticks)) + " 0 0\ncpu0 1\n")
        # pid (comm) state ppid ... utime (14th field) stime (15th)
        fields = ["S"] + ["0"] * 10 + [str(server_ticks), "0"] + ["0"] * 30
        (self.root / str(self.pid) / "stat").write_text(f"{self.pid} (py thon) " + " ".join(fields))
        for tid, ns in zip(("1", "2"), delays_ns):
            (self.root / str(self.pid) / "task" / tid / "schedstat").write_text(
                f"100 {ns} {ns // 1000}\n"
            )
            (self.root / str(self.pid) / "task" / tid / "status").write_text(
                f"Name:\tpy\nvoluntary_ctxt_switches:\t{ns // 100}\n"
                f"nonvoluntary_ctxt_switches:\t{ns // 10000}\n"
            )


def test_host_watch_figures_over_the_transfer_window(tmp_path: Any) -> None:
    hz = os.sysconf("SC_CLK_TCK")
    proc = FakeProc(tmp_path, 4242)
    watch = bench.HostWatch(4242, proc=str(tmp_path))
    # user nice system idle iowait irq softirq steal
    proc.set([1000, 0, 100, 5000, 0, 0, 0, 10], 50, (1_000_000, 0))
    watch.switched[0] = watch.switches()
    watch.sample()
    proc.set(
        [1000 + hz, 0, 100, 5000 + hz // 2, 0, 0, 0, 10 + hz // 2],
        50 + hz // 2,
        (3_000_000, 4_000_000),
    )
    watch.sample()
    watch.switched[1] = watch.switches()
    t0, t1 = watch.samples[0][0], watch.samples[1][0]
    own = watch.samples[1][4] - watch.samples[0][4]
    got = watch.figures(t0, t1, client_cpu=0.25)
    # steal: half a second of 2 s of ticks; server 0.5 s, client 0.25 s of the 1 s busy
    assert got["steal"] == pytest.approx(25.0)
    assert got["others"] == pytest.approx(max(0.0, 1.0 - 0.5 - 0.25 - own) / (t1 - t0))
    assert got["sdelay"] == pytest.approx(6.0)
    assert got["swait"] == pytest.approx(6.0)  # one interval: all of it
    assert got["sslices"] == 6000.0
    assert (got["svol"], got["sinvol"]) == (60000.0, 600.0)
    # a window before any sample: the first sample starts it; one sample: nothing
    assert watch.figures(t0 - 10, t1, 0.0)["sdelay"] == pytest.approx(6.0)
    single = bench.HostWatch(4242, proc=str(tmp_path))
    single.sample()
    assert single.figures(0.0, 1e12, 0.0) == {}
    assert bench.HostWatch(4242, proc=str(tmp_path / "none")).figures(0.0, 1.0, 0.0) == {}


def test_gaps_longest_pause_and_timeline(tmp_path: Any) -> None:
    gaps = bench._Gaps("", "sink", object())
    assert gaps.result() == " gap_ms=0.0"  # no reads: no gap
    gaps.read(10)
    first = gaps._last
    gaps._last = first - 0.040  # the previous read 40 ms ago
    gaps.read(20)
    assert 40.0 <= float(gaps.result().split("=")[1]) < 1000.0

    class Kcp:
        wnd_cap = 700
        rcv_queue = [b"x"] * 3

    class Session:
        kcp = Kcp()

    class Sock:
        _session = Session()

    timed = bench._Gaps(str(tmp_path), "echo", Sock())
    timed.read(100)
    timed.read(200)
    timed.result()
    (written,) = list(tmp_path.iterdir())
    assert written.name.startswith("echo-")
    rows = [line.split() for line in written.read_text().splitlines()]
    assert [r[1:] for r in rows] == [["100", "700", "3"], ["200", "700", "3"]]


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="no /proc here")
def test_task_sampler_writes_each_threads_cpu_and_wait(tmp_path: Any) -> None:
    sampler = bench._TaskSampler(str(tmp_path), every=0.001)
    for _ in range(5000):  # bounded wait for two samples (its own 1 ms timer paces it)
        if len(sampler._rows) >= 2:
            break
        sampler._stop.wait(0.001)
    sampler._stop.set()
    sampler._thread.join(5)
    sampler.write(7)
    (written,) = list(tmp_path.iterdir())
    assert written.name == f"tasks-{os.getpid()}-7.txt"
    first = written.read_text().splitlines()[0].split()
    float(first[0])
    threads = {part.rsplit(":", 2)[0]: part for part in first[1:]}
    assert "MainThread" in threads
    _, run, wait = threads["MainThread"].rsplit(":", 2)
    assert float(run) > 0 and float(wait) >= 0
    off = bench._TaskSampler("")
    off.write(1)  # without --timeline: no thread, no file
    assert not off._thread.is_alive() and len(list(tmp_path.iterdir())) == 1


def test_stability_summary_counts_cells_reasons_storms_and_disturbed_runs() -> None:
    calm = [run(100, others=0.1), run(90, others=0.0), run(95, others=0.1)]
    stormy = [
        run(100, others=0.1, sent=22000),
        run(50, others=1.0, lost=400, sent=22400),  # a storm on a loaded machine
        run(96, others=0.1, sent=22000),
    ]
    r = row("kcp-go->kcpsock", calm)
    r["echo-runs"] = [x["mbps"] for x in stormy]
    r["echo-failed"] = 0
    r["echo-detail"] = stormy
    lines = bench.stability_summary([r]).splitlines()
    assert len(lines) == 3
    assert len(lines[0].split("|")) == len(lines[2].split("|"))
    cells = [c.strip() for c in lines[2].split("|")]
    assert cells[1:4] == ["kcp-go → kcpsock", "", "1/2"]
    assert cells[4] == "RTO storm 1, machine 1"  # by count, then by name
    assert cells[5] == "1/6"  # runs with a storm
    assert cells[6] == "1/6"  # disturbed runs
    assert cells[7] == "2/2"  # without the disturbed run both cells meet 2/3


def _goal_row(
    pair: str, config: str, tree: str, one_way: list[float], echo: list[float], rtt: float
) -> dict[str, Any]:
    ow, ec = [run(v) for v in one_way], [run(v) for v in echo]
    return {
        "pair": pair,
        "tree": tree,
        "mode": "stream",
        "config": config,
        "one-way": {"mbps": sorted(one_way)[len(one_way) // 2]},
        "echo": {"mbps": sorted(echo)[len(echo) // 2]},
        "rtt": (rtt, rtt * 2),
        "one-way-detail": ow,
        "echo-detail": ec,
    }


def _goal_lines(table: str) -> dict[str, list[str]]:
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines()]
    return {r[0]: r[1:] for r in rows if r and r[0] and not r[0].startswith(("---", "issue"))}


def test_goals_table_says_which_goal_is_met_and_names_the_worst_cell() -> None:
    go = [
        _goal_row("kcp-go->kcp-go", "plain", "", [100] * 3, [100] * 3, 0.05),
        _goal_row("kcp-go->kcp-go", "aes+fec", "", [90] * 3, [60] * 3, 0.06),
    ]
    mine = [
        _goal_row("kcpsock->kcpsock", "plain", "t", [300, 280, 290], [150] * 3, 0.08),
        # aes+fec one-way 0.70x (below 0.75); one run at half the fastest (unstable)
        _goal_row("kcpsock->kcpsock", "aes+fec", "t", [63, 63, 126], [70] * 3, 0.13),
        _goal_row("kcp-go->kcpsock", "plain", "t", [200] * 3, [90] * 3, 0.07),
        _goal_row("kcp-go->kcpsock", "aes+fec", "t", [100] * 3, [50] * 3, 0.07),
    ]
    mine[0]["echo-detail"][1].update(lost=300, sent=20000)  # an RTO storm in one run
    many = [
        {"server": "kcpsock, a thread per session", "1": 200.0, "100": 150.0},
        {"server": "kcpsock, selectors, one thread", "1": 200.0, "100": 220.0},
        {"server": "kcp-go", "1": 120.0, "100": 4.0},  # not kcpsock's goal
    ]
    idle = [{"server": "kcpsock", "server_pct": 0.4}, {"server": "kcp-go", "server_pct": 18.0}]
    got = _goal_lines(bench.goals(go + mine, many, idle, 100, ["t"]))
    one_way_plain, one_way_aes, echo, client_echo, rtt, stab, many_g, idle_g = (
        got[g[0]] for g in bench.GOALS
    )
    assert one_way_plain[1:] == ["2.90 (stream plain)", "1", "yes"]
    assert one_way_aes[1:] == ["0.70 (stream aes+fec)", "1", "no (0 of 1 cells)"]
    assert echo[-1] == "yes" and echo[1] == "1.17 (stream aes+fec)"
    assert client_echo[1:] == ["0.83 (stream aes+fec)", "2", "yes"]
    assert rtt[1:] == ["2.17 (stream aes+fec)", "2", "no (1 of 2 cells)"]
    assert stab[1] == "0.50 (kcpsock→kcpsock stream aes+fec one-way)"
    assert stab[2:] == ["8", "no (7 of 8 cells); RTO storms in 1 of 24 runs"]
    assert many_g[1:] == ["0.75 (a thread per session)", "2", "no (1 of 2 cells)"]
    assert idle_g[1:] == ["0.40 (kcpsock server)", "1", "yes"]


def test_goals_without_figures_say_not_measured() -> None:
    got = _goal_lines(bench.goals([], [], [], 100, ["this tree"]))
    assert set(got) == {g[0] for g in bench.GOALS}
    assert all(cells[-1] == "not measured" for cells in got.values())
