#!/usr/bin/env python3
"""summarize.py - the summary half of `make bench` (bench/run_all.sh).

    summarize.py OUT_DIR                 medians of OUT_DIR/results.jsonl: prints
                                         the side-by-side table, writes
                                         OUT_DIR/summary.json, the plot data
                                         (OUT_DIR/plot/*.dat) and the doc section
                                         (OUT_DIR/section.md)
    summarize.py --splice DOC SECTION    puts SECTION between <!-- bench:begin -->
                                         and <!-- bench:end --> in DOC (appended
                                         if the markers are missing)

Every figure is the median of the runs of one configuration; runs that
reported ok:false are left out (and counted).  Throughput: each system's best
window per worker count (highest median tasks/s).
"""
import collections
import json
import math
import os
import re
import statistics
import sys

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
SYSTEMS = ["gsched", "beanstalkd", "gearmand"]
PEERS = SYSTEMS[1:]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def load(out):
    runs, bad = [], []
    with open(os.path.join(out, "results.jsonl")) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                (bad if r.get("ok") is False else runs).append(r)
    return runs, bad


def engine_figures(out):
    """The engine-only ceiling (BM_BatchSubmitDrain, median items/s, best of
    1 and 2 threads) and the segment's resident bytes per task."""
    eng = {}
    try:
        with open(os.path.join(out, "engine.json")) as f:
            for b in json.load(f)["benchmarks"]:
                # The median aggregate; with 1 repetition, the run itself.
                if b["name"].startswith("BM_BatchSubmitDrain") and b.get("aggregate_name", "median") == "median":
                    threads = int(re.search(r"threads:(\d+)", b["name"]).group(1))
                    eng["ceiling_%dt" % threads] = b["items_per_second"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    cands = [v for k, v in eng.items() if k.startswith("ceiling_")]
    eng["ceiling"] = max(cands) if cands else None
    try:
        text = open(os.path.join(out, "engine_memory.txt")).read()
        for key, label in (("seg_resident", "segment resident"), ("seg_mapped", "segment mapped")):
            m = re.search(label + r"\s+\d+ B\s+([\d.]+) B/task", text)
            eng[key] = float(m.group(1)) if m else None
    except OSError:
        eng["seg_resident"] = eng["seg_mapped"] = None
    return eng


def nines(p):
    """Percentile -> x on a 'nines' axis: 50 -> 0.3, 90 -> 1, 99 -> 2."""
    return -math.log10(1.0 - p / 100.0)


def gsched_curve(out, w):
    """Per-point median over the runs' --percentiles-out files."""
    pts = collections.defaultdict(list)
    d = os.path.join(out, "pct")
    count = 0
    for name in sorted(os.listdir(d)):
        if not name.startswith("gsched-%dw-" % w):
            continue
        with open(os.path.join(d, name)) as f:
            for line in f:
                if line.startswith("#"):
                    m = re.search(r"\((\d+) tasks\)", line)
                    count = int(m.group(1)) if m else count
                    continue
                p, v = line.split()
                pts[float(p)].append(float(v))
    return count, sorted((p, statistics.median(v)) for p, v in pts.items())


def summarize(out):
    runs, bad = load(out)
    lat = collections.defaultdict(list)  # (system, workers) -> runs
    tp = collections.defaultdict(list)  # (system, workers, window) -> runs
    mem = collections.defaultdict(list)  # system -> runs
    for r in runs:
        s, mode = r["system"], r["mode"]
        if mode == "latency":
            lat[(s, r["workers"])].append(r)
        elif mode == "throughput":
            tp[(s, r["workers"], r["window"])].append(r)
        elif mode == "memory":
            mem[s].append(r)

    S = {"latency": {}, "throughput": {}, "sweep": {}, "memory": {}}
    for (s, w), rs in lat.items():
        S["latency"]["%s/%dw" % (s, w)] = {
            k: med(r.get(k) for r in rs)
            for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "tasks_per_s", "tasks")
        } | {"runs": len(rs)}
    for (s, w, win), rs in tp.items():
        S["sweep"]["%s/%dw/win%d" % (s, w, win)] = {
            "system": s, "workers": w, "window": win, "runs": len(rs),
            "tasks_per_s": med(r["tasks_per_s"] for r in rs),
            "p50_us": med(r.get("p50_us") for r in rs),
        }
    for v in S["sweep"].values():
        key = "%s/%dw" % (v["system"], v["workers"])
        best = S["throughput"].get(key)
        if best is None or v["tasks_per_s"] > best["tasks_per_s"]:
            S["throughput"][key] = v
    for s, rs in mem.items():
        S["memory"][s] = {
            "bytes_per_task": med(r["bytes_per_task"] for r in rs),
            "rss_before_kb": med(r["rss_before_kb"] for r in rs),
            "rss_after_kb": med(r["rss_after_kb"] for r in rs),
            "tasks": rs[0]["tasks"], "runs": len(rs),
            "fill_tasks_per_s": med((r.get("fill") or {}).get("tasks_per_s") for r in rs),
        }
    S["engine"] = engine_figures(out)
    S["bad_runs"] = len(bad)
    return S


def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "us":
        return "%.0f" % v if v >= 100 else "%.1f" % v
    return "{:,.0f}".format(v)


def ratio(a, b):
    return "%.2f×" % (a / b) if a is not None and b else "-"


def table_rows(S):
    """[(metric, {system: (value, text)})] for the main table."""
    rows = []
    for w in (1, 2):
        for k, name in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
            cells = {}
            for s in SYSTEMS:
                v = S["latency"].get("%s/%dw" % (s, w), {}).get(k)
                cells[s] = (v, fmt(v, "us"))
            rows.append(("round trip %s, µs (%d worker%s)" % (name, w, "s" if w > 1 else ""), cells))
    for w in (1, 2):
        cells = {}
        for s in SYSTEMS:
            b = S["throughput"].get("%s/%dw" % (s, w))
            cells[s] = (b["tasks_per_s"], "%s (w %d)" % (fmt(b["tasks_per_s"]), b["window"])) if b else (None, "-")
        rows.append(("tasks/s, %d worker%s (best window)" % (w, "s" if w > 1 else ""), cells))
    cells = {}
    for s in SYSTEMS:
        v = S["memory"].get(s, {}).get("bytes_per_task")
        cells[s] = (v, fmt(v))
    n = next((m["tasks"] for m in S["memory"].values()), 1000000)
    rows.append(("server bytes per queued task (%s queued, no worker)" % fmt(n), cells))
    cells = {}
    for s in SYSTEMS:
        m = S["memory"].get(s)
        v = m["rss_after_kb"] * 1024 / m["tasks"] if m else None
        cells[s] = (v, fmt(v))
    rows.append(("  whole server VmRSS after the fill / queued tasks", cells))
    e = S["engine"]
    rows.append(("engine-only ceiling, tasks/s (no gRPC)", {"gsched": (e["ceiling"], fmt(e["ceiling"]))}))
    rows.append(("engine segment bytes per task (resident)",
                 {"gsched": (e.get("seg_resident"), "%.1f" % e["seg_resident"] if e.get("seg_resident") else "-")}))
    return rows


def goals(S):
    """The issue's targets: (goal, measured, PASS/FAIL/-)."""
    out = []
    L, T, M = S["latency"], S["throughput"], S["memory"]
    for w in (1, 2):
        g = T.get("gsched/%dw" % w)
        for p in PEERS:
            q = T.get("%s/%dw" % (p, w))
            ok = g and q and g["tasks_per_s"] >= 10 * q["tasks_per_s"]
            out.append(("tasks/s ≥ 10× %s's, %d worker%s" % (p, w, "s" if w > 1 else ""),
                        "%s / %s = %s" % (fmt(g and g["tasks_per_s"]), fmt(q and q["tasks_per_s"]),
                                          ratio(g and g["tasks_per_s"], q and q["tasks_per_s"])),
                        ("PASS" if ok else "FAIL") if g and q else "-"))
    for w in (1, 2):
        g, b = L.get("gsched/%dw" % w), L.get("beanstalkd/%dw" % w)
        out.append(("p50 ≤ beanstalkd's p50, %d worker%s" % (w, "s" if w > 1 else ""),
                    "%s µs vs %s µs" % (fmt(g and g["p50_us"], "us"), fmt(b and b["p50_us"], "us")),
                    ("PASS" if g["p50_us"] <= b["p50_us"] else "FAIL") if g and b else "-"))
        out.append(("p99 ≤ 2.5× own p50, %d worker%s" % (w, "s" if w > 1 else ""),
                    "%s µs vs 2.5 × %s µs = %s µs" % (fmt(g and g["p99_us"], "us"), fmt(g and g["p50_us"], "us"),
                                                      fmt(g and 2.5 * g["p50_us"], "us")),
                    ("PASS" if g["p99_us"] <= 2.5 * g["p50_us"] else "FAIL") if g else "-"))
    m = M.get("gsched", {}).get("bytes_per_task")
    out.append(("memory ≤ 128 B per queued task", "%s B" % fmt(m), ("PASS" if m <= 128 else "FAIL") if m is not None else "-"))
    return out


def text_table(S):
    rows = table_rows(S)
    hdr = ["metric (median of runs)"] + SYSTEMS + ["gsched/beanstalkd", "gsched/gearmand"]
    body = []
    for name, cells in rows:
        g = cells.get("gsched", (None, "-"))[0]
        body.append([name] + [cells.get(s, (None, "-"))[1] for s in SYSTEMS] +
                    [ratio(g, cells.get(p, (None,))[0]) for p in PEERS])
    widths = [max(len(r[i]) for r in [hdr] + body) for i in range(len(hdr))]
    line = lambda r: "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r))
    return "\n".join([line(hdr), "-" * len(line(hdr))] + [line(r) for r in body]), hdr, body


def write_plot_data(S, out):
    d = os.path.join(out, "plot")
    for w in (1, 2):
        # Latency: gsched's full percentile curve; the peers report p50, p90,
        # p99, p99.9 and max only (max placed at 1 - 1/N).
        count, curve = gsched_curve(out, w)
        with open(os.path.join(d, "lat_gsched_%dw.dat" % w), "w") as f:
            f.write("# nines percentile us\n")
            for p, v in curve:
                if p < 100:
                    f.write("%.4f %g %g\n" % (nines(p), p, v))
                elif count:
                    f.write("%.4f max %g\n" % (math.log10(count), v))
        for s in PEERS:
            m = S["latency"].get("%s/%dw" % (s, w))
            with open(os.path.join(d, "lat_%s_%dw.dat" % (s, w)), "w") as f:
                f.write("# nines percentile us\n")
                if m:
                    for p, k in ((50, "p50_us"), (90, "p90_us"), (99, "p99_us"), (99.9, "p999_us")):
                        f.write("%.4f %g %g\n" % (nines(p), p, m[k]))
                    f.write("%.4f max %g\n" % (math.log10(m["tasks"] or 10000), m["max_us"]))
        for s in SYSTEMS:
            pts = sorted((v["window"], v["tasks_per_s"]) for v in S["sweep"].values()
                         if v["system"] == s and v["workers"] == w)
            with open(os.path.join(d, "tp_%s_%dw.dat" % (s, w)), "w") as f:
                f.write("# window tasks_per_s\n")
                for win, t in pts:
                    f.write("%d %g\n" % (win, t))


def machine(out):
    m = {}
    with open(os.path.join(out, "machine.txt")) as f:
        for line in f:
            k, _, v = line.partition(":")
            m[k.strip()] = v.strip()
    return m


def section(S, out, text):
    m = machine(out)
    env = lambda k, d: os.environ.get(k, d)
    _, hdr, body = text_table(S)
    md = lambda r: "| " + " | ".join(r) + " |"
    fails = [l for l in open(os.path.join(out, "failures.txt")).read().splitlines() if l.strip()]
    L = []
    a = L.append
    a(BEGIN)
    a("# End-to-end: gsched against beanstalkd and gearmand")
    a("")
    a("Everything between the `bench:begin` and `bench:end` markers is written by `make bench`")
    a("(bench/run_all.sh, bench/summarize.py, bench/plots/*.gp): don't edit it by hand.")
    a("The raw JSON lines (one per run) are in `build/bench-results/results.jsonl`.")
    a("")
    a("## Workload")
    a("")
    a("All systems run the same workload: an echo of a 16-byte payload, one server, 1 or 2")
    a("workers, one client, all on 127.0.0.1. Each configuration runs %s times. Every" % env("RUNS", "3"))
    a("figure is the median of those runs.")
    a("")
    a("- **Latency**: one task in flight, %s round trips (client send to result at the" % env("LAT_TASKS", "10000"))
    a("  client). gsched runs as the peers do: a `gsched server` process and worker")
    a("  processes (4 slots for latency, `--slots` below for throughput), measured by")
    a("  `gsched bench --server ADDR` from its own process (1000 warmup tasks, then it probes")
    a("  SubmitStream and unary Submit+Wait and uses the faster one).")
    a("- **Throughput**: a window of W tasks in flight from one client; the best window per")
    a("  system and worker count is kept. Peers: W in {%s}, %s tasks per run; a peer" % (env("WINDOWS", "16 100 1000 4000").replace(" ", ", "), env("PEER_TASKS", "50000")))
    a("  worker takes one job at a time, as its protocol does. gsched: W in {%s}, %s tasks" % (env("GS_WINDOWS", "1000 4000 8000").replace(" ", ", "), env("GS_TASKS", "200000")))
    a("  per run over one SubmitStream, each worker process running up to %s tasks at once" % env("GS_SLOTS", "256"))
    a("  (`--slots`), which is what lets assignments and results travel in batches.")
    a("- **Memory**: server VmRSS (from `/proc/PID/status`) before and after")
    a("  queueing %s tasks with no worker attached; bytes/task = delta / N. gsched:" % fmt(next((v["tasks"] for v in S["memory"].values()), 1000000)))
    a("  `gsched server --listen 127.0.0.1:0` is filled by `gsched bench --mode fill`")
    a("  (unary Submit of 1000 specs, no waiting).")
    a("- **Engine-only ceiling**: `BM_BatchSubmitDrain` from `bench_engine` (submit,")
    a("  pop_assign, finish, release of 64-task batches in one process, no gRPC), the")
    a("  median of the 1- and 2-thread runs, whichever is higher.")
    a("")
    a("## Machine")
    a("")
    a("- %s vCPUs, `lscpu` model \"%s\", kernel %s" % (m.get("nproc"), m.get("cpu"), m.get("kernel")))
    a("- run %s at commit %s, took %s s" % (m.get("date"), m.get("commit"), m.get("duration_s")))
    a("- load average at the start: %s; at the end: %s" % (m.get("loadavg_start"), m.get("loadavg_end")))
    a("- **The host is shared and noisy.** Other jobs run on the same 2 vCPUs, and the")
    a("  server, the workers and the client share them too. Expect run-to-run spread,")
    a("  worst in the tails (p99, p99.9).")
    a("")
    a("## Command")
    a("")
    a("```")
    a("make bench        # = build, then bench/run_all.sh (knobs: RUNS, WINDOWS, ... in its header)")
    a("```")
    a("")
    a("## Results")
    a("")
    a("Ratios are gsched / peer: above 1× is better for tasks/s, below 1× is better for")
    a("latency and memory. \"w N\" is the best window.")
    a("")
    a(md(hdr))
    a(md(["---"] + ["---:"] * (len(hdr) - 1)))
    for r in body:
        a(md(r))
    a("")
    e = S["engine"]
    for w in (1, 2):
        g = S["throughput"].get("gsched/%dw" % w)
        if g and e.get("ceiling"):
            a("- gsched end to end with %d worker%s: %.1f %% of the engine-only ceiling (%s vs %s tasks/s)." %
              (w, "s" if w > 1 else "", 100 * g["tasks_per_s"] / e["ceiling"], fmt(g["tasks_per_s"]), fmt(e["ceiling"])))
    gm = S["memory"].get("gsched")
    if gm:
        a("- gsched server VmRSS: %s kB before and %s kB after the fill (medians). The fill ran at %s tasks/s."
          % (fmt(gm["rss_before_kb"]), fmt(gm["rss_after_kb"]), fmt(gm["fill_tasks_per_s"])))
        a("  The \"before\" figure includes the parts of the segment that the server touches at start.")
        a("  The engine's own report (`bench/engine_memory`, segment sized for exactly")
        a("  1,000,000 tasks) gives %s B/task resident and %s B/task mapped." %
          ("%.1f" % e["seg_resident"] if e.get("seg_resident") else "-", "%.1f" % e["seg_mapped"] if e.get("seg_mapped") else "-"))
    if S["bad_runs"] or fails:
        a("- **Failed runs: %d** (left out of the medians): %s" % (max(S["bad_runs"], len(fails)), "; ".join(fails) or "see results.jsonl"))
    a("")
    a("## Targets (issue)")
    a("")
    a("| target | measured | result |")
    a("|---|---|---|")
    for g in goals(S):
        a(md(list(g)))
    a("")
    a("## Plots")
    a("")
    a("![Round-trip latency percentiles, one task in flight](img/bench-latency.png)")
    a("")
    a("Latency, one task in flight. gsched's curve has 25 points, from p1 to p99.99 and max")
    a("(`gsched bench --percentiles-out`, the median of the runs at each point). The peer")
    a("drivers report only p50, p90, p99, p99.9 and max, so each peer has those 5 points.")
    a("Max is drawn at 1 − 1/N.")
    a("")
    a("![Throughput against window size](img/bench-throughput.png)")
    a("")
    a("## Throughput by window (medians)")
    a("")
    wins = sorted({v["window"] for v in S["sweep"].values()})
    a(md(["system", "workers"] + ["w %d" % x for x in wins]))
    a(md(["---", "---:"] + ["---:"] * len(wins)))
    for s in SYSTEMS:
        for w in (1, 2):
            cells = [fmt(S["sweep"].get("%s/%dw/win%d" % (s, w, x), {}).get("tasks_per_s")) for x in wins]
            a(md([s, str(w)] + cells))
    a("")
    a("## Table as printed by `make bench`")
    a("")
    a("```")
    a(text)
    a("```")
    a(END)
    return "\n".join(L) + "\n"


def splice(doc, sec_path):
    sec = open(sec_path).read()
    text = open(doc).read() if os.path.exists(doc) else ""
    i, j = text.find(BEGIN), text.find(END)
    if i >= 0 and j > i:
        text = text[:i] + sec.rstrip("\n") + text[j + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + sec
    tmp = doc + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, doc)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--splice":
        splice(sys.argv[2], sys.argv[3])
        return
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    S = summarize(out)
    text, _, _ = text_table(S)
    text += "\n\ntargets:\n" + "\n".join("  %-4s  %-40s %s" % (r, g, m) for g, m, r in goals(S))
    print(text)
    write_plot_data(S, out)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(S, f, indent=1)
    with open(os.path.join(out, "section.md"), "w") as f:
        f.write(section(S, out, text))


if __name__ == "__main__":
    main()
