"""Turns bench/results/results.json into results.md and PNG plots.

Usage: python report.py RESULTS_DIR [TOTAL_SECONDS]
(bench/run.sh runs it in a small venv with matplotlib; it can be rerun on
an existing results.json.)
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TARGETS = ["hos-proxy", "hos-proxy-grpc", "direct", "feast-serve"]
COLORS = {"hos-proxy": "#d95f02", "hos-proxy-grpc": "#e6ab02", "direct": "#1b9e77", "feast-serve": "#7570b3"}
LOADS = ["c1", "c8", "c32", "r200", "r1000"]
LOAD_TEXT = {"c1": "1 conn.", "c8": "8 conn.", "c32": "32 conn.", "r200": "200 rps", "r1000": "1000 rps"}
SCEN_TEXT = {
    "read_1x10": "read 1 row x 10 features",
    "read_1x50": "read 1 row x 50 features",
    "grpc_1x50": "gRPC GetOnlineFeatures 1 row x 50 features (hos-proxy --grpc-listen)",
    "read_100x50": "read 100 rows x 50 features",
    "read_multi": "read 1 row, 3 views on 3 backends (16+16+16 features)",
    "write_100x50": "write 100 rows x 50 features",
}


def ms(us):
    return "n/a" if us is None or (isinstance(us, float) and math.isnan(us)) else f"{us / 1000:.3f}"


def find(runs, scenario, backend, target, load):
    for r in runs:
        if (r["scenario"], r["backend"], r["target"], r["load"]) == (scenario, backend, target, load):
            return r
    if scenario == "grpc_1x50" and target in ("hos-proxy", "direct"):
        # gRPC's comparison points: its own runs when read_1x50 did not run,
        # else read_1x50's (the same requests over HTTP, and the floor).
        return find(runs, "read_1x50", backend, target, load)
    return None


def p(r, q="p99"):
    return r["latency_us"].get(q) if r else None


THRESHOLD = {"other_cpu_pct": 10.0}


def disturbed(r):
    return bool(r) and r.get("machine", {}).get("other_cpu_pct", 0) > THRESHOLD["other_cpu_pct"]


def flag(r):
    """A mark for a run disturbed by other processes on the machine."""
    return " ⚠" if disturbed(r) else ""


def cpu_per_req(r):
    """Server CPU µs per request: over the measured window when the load
    generator read it (/proc/<pid>/stat at the window's start and end),
    else the harness's sample, which covers the warm-up too."""
    measured = ((r or {}).get("server_cpu") or {}).get("us_per_request")
    if measured is not None and not (isinstance(measured, float) and math.isnan(measured)):
        return measured
    srv = (r or {}).get("server") or {}
    n = r["sent"] + r.get("warmup_sent", 0) if r else 0
    return srv["cpu_s"] / n * 1e6 if srv.get("cpu_s") is not None and n else None


def main() -> int:
    out = Path(sys.argv[1])
    total = int(sys.argv[2]) if len(sys.argv) > 2 else None
    res = json.loads((out / "results.json").read_text())
    runs = res["runs"]
    cfg = res["config"]
    md = []
    md.append("# hos-proxy benchmark results\n")
    md.append(f"Run started {res['started_utc']}; harness {res.get('harness_seconds', '?')} s"
              + (f", whole `bench/run.sh` {total} s" if total else "") + ". "
              f"Each point: {cfg['duration_s']:g} s measured after {cfg['warmup_s']:g} s warm-up; "
              f"{cfg['entities']:,} entities; feast serve with {cfg['feast_workers']} gunicorn workers. "
              "Machine: see machine.md; command: command.txt.\n")
    THRESHOLD["other_cpu_pct"] = cfg.get("max_other_cpu_pct", 10.0)
    dist = [r for r in runs if disturbed(r)]
    md.append(f"Runs during which other processes on the machine used more than "
              f"{cfg.get('max_other_cpu_pct', 10):g}% of its CPU were repeated (up to 3 tries, "
              f"{res.get('retries_used', 0)} repeats in all) and the least disturbed try kept; "
              f"{len(dist)} of {len(runs)} runs stayed above it and are marked ⚠.\n")
    md.append("Loads: `cN` = closed loop, N connections (or N in-process workers for `direct`), each sending "
              "its next request when the last is answered; `rR` = open loop at R requests/s over 32 connections, "
              "latency measured from each request's scheduled time (queueing counts). `unsent` = open-loop "
              "requests still not sent 1 s after the end (the target could not keep up). Latencies in ms.\n")
    md.append("`direct` is the floor: the same lookup done in-process by the load generator (SQLite SELECT "
              "through rusqlite, or pipelined Redis HMGET; same keys, same Value decoding, same JSON response "
              "built), no HTTP. For the 3-backend scenario it does the three lookups one after another; "
              "feast serve reads all three views from one SQLite file (Feast's hybrid store cannot hold two "
              "SQLite backends).\n")

    # ---- targets -----------------------------------------------------------
    md.append("## Targets\n")
    md.append("| target | measured | verdict |")
    md.append("|---|---|---|")
    verdicts = []
    for fam in ("sqlite", "redis"):
        pr, dr = find(runs, "read_1x50", fam, "hos-proxy", "c1"), find(runs, "read_1x50", fam, "direct", "c1")
        if pr and dr:
            ov = p(pr) - p(dr)
            ok = ov < 300
            verdicts.append(ok)
            md.append(f"| proxy p99 overhead over direct < 0.3 ms, 1x50, {fam}, 1 conn. | "
                      f"{ms(p(pr))} - {ms(p(dr))} = **{ms(ov)} ms** (p50: {ms(p(pr, 'p50'))} vs {ms(p(dr, 'p50'))})"
                      f"{flag(pr) or flag(dr)} | "
                      f"{'met' if ok else 'NOT met'} |")
    for fam in ("sqlite", "redis"):
        for scen in ("read_1x10", "read_1x50", "read_100x50"):
            pr, fr = find(runs, scen, fam, "hos-proxy", "c32"), find(runs, scen, fam, "feast-serve", "c32")
            if pr and fr and fr["throughput_rps"]:
                ratio = pr["throughput_rps"] / fr["throughput_rps"]
                ok = ratio >= 20 and p(pr) <= p(fr)
                verdicts.append(ok)
                cp, cf = cpu_per_req(pr), cpu_per_req(fr)
                cpu = f"; server CPU per request {cp:.0f} vs {cf:.0f} µs ({cf / cp:.1f}x)" if cp and cf else ""
                md.append(f"| >= 20x feast serve throughput at equal or better p99, {scen}, {fam}, 32 conn. | "
                          f"{pr['throughput_rps']:.0f} / {fr['throughput_rps']:.0f} rps = **{ratio:.1f}x**; "
                          f"p99 {ms(p(pr))} vs {ms(p(fr))} ms{cpu}{flag(pr) or flag(fr)} | {'met' if ok else 'NOT met'} |")
    for fam in ("sqlite", "redis"):
        a, d = find(runs, "read_100x50", fam, "hos-proxy", "c1"), find(runs, "read_100x50", fam, "direct", "c1")
        if a and d:
            ratio = p(a) / p(d)
            ok = ratio <= 1.3
            verdicts.append(ok)
            md.append(f"| proxy p99 <= 1.3x the direct client's p99, 100x50, {fam}, 1 conn. | "
                      f"{ms(p(a))} / {ms(p(d))} = **{ratio:.2f}x**{flag(a) or flag(d)} | {'met' if ok else 'NOT met'} |")
    for fam in ("sqlite", "redis"):
        r = find(runs, "read_1x50", fam, "hos-proxy", "c32")
        c = cpu_per_req(r)
        if c is not None:
            ok = c <= 80
            verdicts.append(ok)
            md.append(f"| server CPU per 1x50 request <= 80 µs, {fam}, 32 conn. | **{c:.0f} µs** "
                      f"(/proc/<pid>/stat utime+stime over the measured window / requests){flag(r)} | "
                      f"{'met' if ok else 'NOT met'} |")
    rl = res.get("reload")
    if rl:
        # Verdicts on the document the operator publishes (JSON); a YAML
        # phase, when there is one, is reported for reference only.
        judged = [ph for ph in rl["phases"] if ph.get("format", "json") == "json"]
        rphases = [ph for ph in judged if ph["mode"] != "none"]
        errs = sum(ph["errors"] for ph in rl["phases"])
        unsent = sum(ph["unsent"] for ph in rl["phases"])
        reqs = sum(ph["ok"] for ph in rl["phases"])
        rew = sum(ph["file_rewrites"] for ph in rphases)
        rel = sum(ph["reloads_ok"] for ph in rphases)
        ok = errs == 0 and unsent == 0 and all(ph["proxy_alive"] for ph in rl["phases"])
        verdicts.append(ok)
        md.append(f"| 0 errors during reloads (1,000 views) | **{errs} errors** in {reqs + errs:,} requests; "
                  f"{rew} file rewrites, {rel:.0f} successful reloads | {'met' if ok else 'NOT met'} |")
        rss = max(ph["server"].get("rss_kib_max", 0) for ph in judged)
        still = [ph["server"].get("rss_kib_max", 0) for ph in rl["phases"] if ph["mode"] == "none"]
        ok = rss <= 50 * 1024
        verdicts.append(ok)
        md.append(f"| RSS <= 50 MiB with 1,000 views, before and during reloads | max VmRSS **{rss / 1024:.1f} MiB**"
                  + (f"; {still[0] / 1024:.1f} MiB with the same views and load before any reload" if still else "")
                  + f" (sampled every 0.2 s) | {'met' if ok else 'NOT met'} |")
        base = [ph for ph in rl["phases"] if ph["mode"] == "none"]
        if base and rphases:
            b99 = p(base[0])
            worst = max(rphases, key=lambda ph: p(ph))
            ratio = p(worst) / b99 if b99 else float("inf")
            ok = ratio <= 1.2 and errs == 0
            verdicts.append(ok)
            md.append(f"| p99 during reloads <= 1.2x p99 without, 0 errors | {ms(p(worst))} ({worst['mode']}) / "
                      f"{ms(b99)} ms = **{ratio:.2f}x**, {errs} errors | {'met' if ok else 'NOT met'} |")
    md.append("")

    # ---- gRPC ---------------------------------------------------------------------
    grpc_runs = [r for r in runs if r["scenario"] == "grpc_1x50" and r["target"] == "hos-proxy-grpc"]
    if grpc_runs:
        md.append("## gRPC 1x50 against HTTP 1x50 and the floor (same run)\n")
        md.append("`feast serve` has no gRPC, so gRPC (`hos-proxy --grpc-listen`, "
                  "`feast.serving.ServingService/GetOnlineFeatures`, one HTTP/2 connection per load-generator "
                  "worker) is compared with the same proxy over HTTP and with the direct floor, on the same "
                  "requests. Latencies in ms.\n")
        md.append("| backend | load | gRPC rps | gRPC p50 / p99 | HTTP rps | HTTP p50 / p99 | direct p50 / p99 "
                  "| gRPC p99 - direct p99 | server CPU per request gRPC / HTTP (µs) |")
        md.append("|---|---|---|---|---|---|---|---|---|")
        for g in grpc_runs:
            h = find(runs, "grpc_1x50", g["backend"], "hos-proxy", g["load"])
            d = find(runs, "grpc_1x50", g["backend"], "direct", g["load"])
            cg, ch = cpu_per_req(g), cpu_per_req(h)
            md.append(f"| {g['backend']} | {LOAD_TEXT[g['load']]} | {g['throughput_rps']:.0f} | "
                      f"{ms(p(g, 'p50'))} / {ms(p(g))} | {h['throughput_rps']:.0f} | "
                      f"{ms(p(h, 'p50'))} / {ms(p(h))} | " if h else
                      f"| {g['backend']} | {LOAD_TEXT[g['load']]} | {g['throughput_rps']:.0f} | "
                      f"{ms(p(g, 'p50'))} / {ms(p(g))} | n/a | n/a | ")
            md[-1] += (f"{ms(p(d, 'p50'))} / {ms(p(d))} | {ms(p(g) - p(d))} | " if d else "n/a | n/a | ")
            md[-1] += (f"{cg:.0f}" if cg is not None else "-") + " / " + (f"{ch:.0f}" if ch is not None else "-")
            md[-1] += f"{flag(g)} |"
        md.append("")

    # ---- ratios ---------------------------------------------------------------
    md.append("## Ratios (same run)\n")
    md.append("| scenario | backend | load | proxy p99 - direct p99 (ms) | proxy/direct p50 | proxy/direct p99 "
              "| proxy/feast throughput | proxy/feast p99 |")
    md.append("|---|---|---|---|---|---|---|---|")
    for scen in SCEN_TEXT:
        if scen == "grpc_1x50":
            continue  # its own table above
        for fam in ("sqlite", "redis", "hybrid"):
            for load in LOADS:
                pr = find(runs, scen, fam, "hos-proxy", load)
                if not pr:
                    continue
                dr, fr = find(runs, scen, fam, "direct", load), find(runs, scen, fam, "feast-serve", load)

                def ratio(a, b, f="{:.2f}"):
                    return f.format(a / b) if a is not None and b else "n/a"

                md.append(f"| {scen} | {fam} | {LOAD_TEXT[load]} | "
                          f"{ms(p(pr) - p(dr)) if dr else 'n/a'} | "
                          f"{ratio(p(pr, 'p50'), p(dr, 'p50') if dr else None)} | "
                          f"{ratio(p(pr), p(dr) if dr else None)} | "
                          f"{ratio(pr['throughput_rps'], fr['throughput_rps'] if fr else None, '{:.1f}')} | "
                          f"{ratio(p(pr), p(fr) if fr else None)} |")
    md.append("\nOpen-loop throughput ratios near 1 only mean both targets kept up with the offered rate.\n")

    # ---- all runs ---------------------------------------------------------------
    md.append("## All runs\n")
    md.append("Latencies come from HDR histograms (per worker, merged; 3 significant digits). Open-loop runs "
              "measure from each request's scheduled send time (`latency_from: scheduled` in results.json), "
              "closed-loop runs from the send. `server CPU per request` = the server's utime + stime "
              "(/proc/<pid>/stat, summed over feast serve's processes) over the measured window, divided by "
              "the requests sent in it.\n")
    md.append("`other CPU` = the share of the machine's CPU time (all cores) used during the run by processes "
              "other than the target server, the load generator and redis-server, from /proc/stat: "
              "interference from whatever else ran on the machine. High values make that run's tail latencies "
              "unreliable.\n")
    md.append("| scenario | backend | load | target | throughput (rps) | p50 | p90 | p99 | p99.9 | max | errors "
              "| unsent | server RSS max (MiB) | server CPU per request (µs) | other CPU (%) |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        lat = r["latency_us"]
        srv = r.get("server") or {}
        c = cpu_per_req(r)
        cpu = f"{c:.0f}" if c is not None else "-"
        rss = f"{srv['rss_kib_max'] / 1024:.1f}" if srv.get("rss_kib_max") else "-"
        errs = str(r["errors"]) + (f" ({', '.join(f'{k}: {v}' for k, v in r['error_kinds'].items())})"
                                   if r["errors"] else "")
        md.append(f"| {r['scenario']} | {r['backend']} | {LOAD_TEXT[r['load']]} | {r['target']} | "
                  f"{r['throughput_rps']:.0f} | {ms(lat['p50'])} | {ms(lat['p90'])} | {ms(lat['p99'])} | "
                  f"{ms(lat['p99.9'])} | {ms(lat['max'])} | {errs} | {r['unsent']} | {rss} | {cpu} | "
                  f"{r.get('machine', {}).get('other_cpu_pct', '-')}{flag(r)} |")
    md.append("")

    if rl:
        md.append("## Hot reload (routing table with 1,000 views rewritten every second)\n")
        md.append(f"`hos-proxy serve --routing-table FILE`, the table of the hybrid repo plus "
                  f"{rl['feature_views'] - 3} copies of user_stats; two variants alternate (every synthetic "
                  f"view moves between sqlite_a and sqlite_b and changes its TTL). File size "
                  f"{rl['file_bytes'] / 1024:.0f} KiB as compact JSON (what the operator publishes)"
                  + (f", {rl['file_bytes_yaml'] / 1024:.0f} KiB as YAML (the `-yaml` phase, for reference, not in "
                     f"the verdicts)" if rl.get("file_bytes_yaml") else "")
                  + ". Read load: 1x50 from user_stats, 8 connections.\n")
        md.append("| rewrite mode | requests ok | errors | p50 | p99 | p99.9 | max | rewrites | reloads ok "
                  "| reloads rejected | routing versions seen | RSS max (MiB) |")
        md.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for ph in rl["phases"]:
            lat = ph["latency_us"]
            mode = "none (baseline, 1,000 views)" if ph["mode"] == "none" else ph["mode"]
            md.append(f"| {mode} | {ph['ok']:,} | {ph['errors']} | {ms(lat['p50'])} | {ms(lat['p99'])} | "
                      f"{ms(lat['p99.9'])} | {ms(lat['max'])} | {ph['file_rewrites']} | {ph['reloads_ok']:.0f} | "
                      f"{ph['reloads_error']:.0f} | {ph['routing_versions_seen']} | "
                      f"{ph['server'].get('rss_kib_max', 0) / 1024:.1f} |")
        base = find(runs, "read_1x50", "sqlite", "hos-proxy", "c8")
        if base:
            md.append(f"\nFor comparison, read_1x50 at 8 connections on the sqlite repo (3 views, another "
                      f"process): p50 {ms(p(base, 'p50'))}, p99 {ms(p(base))}, p99.9 {ms(p(base, 'p99.9'))} ms, "
                      f"RSS max {(base.get('server') or {}).get('rss_kib_max', 0) / 1024:.1f} MiB.\n")
        md.append("\nA rewrite in place can be read half-written; such a file is rejected (`reloads rejected`) "
                  "and the previous table keeps serving.\n")

    md.append("## Data and checks\n")
    d = res.get("data", {})
    md.append(f"- Loading through Feast (seconds): {json.dumps(d.get('timings', {}))}; SQLite A holds "
              f"{d.get('sqlite_a_rows_user_stats', '?'):,} user_stats rows, {d.get('sqlite_a_bytes', 0) / 2**20:.0f} MiB.")
    for k, v in res.get("checks", {}).get("same_answers", {}).items():
        md.append(f"- same answer before load, {k}: {v}")
    md.append(f"- server RSS at start (KiB): {json.dumps(res.get('startup_rss_kib', {}))}")
    md.append(f"- server RSS at end (KiB): {json.dumps(res.get('end_rss_kib', {}))}")
    md.append(f"- proxy log WARN/ERROR lines: {json.dumps(res.get('server_logs_warn_lines', {}))}")
    md.append("")
    profs = [x for x in res.get("profiles", []) if x.get("shape")]
    if profs or res.get("profiles"):
        md.append("## Profiles\n")
        if not profs:
            md.append(f"Not recorded: {res['profiles'][0].get('skipped', 'unknown reason')}.\n")
        else:
            md.append("One extra, unmeasured run per shape with `perf record` attached to the hos-proxy serving "
                      "it (its throughput under perf is shown; the measured runs above ran without perf).\n")
            md.append("| shape | load | flamegraph | rps under perf | perf |")
            md.append("|---|---|---|---|---|")
            for x in profs:
                link = f"[{x['svg']}]({x['svg']})" if x.get("svg") else "failed"
                md.append(f"| {x['shape']} ({x['target']}) | {LOAD_TEXT.get(x['load'], x['load'])} | {link} | "
                          f"{x['throughput_rps']:.0f} | `perf {x['perf']}` |")
            md.append("")
    (out / "results.md").write_text("\n".join(md))

    # ---- plots -----------------------------------------------------------------
    plots = []
    scen_fams = [(s, f) for s in SCEN_TEXT for f in ("sqlite", "redis", "hybrid")
                 if any(r["scenario"] == s and r["backend"] == f for r in runs)]
    if scen_fams:
        n = len(scen_fams)
        cols = 2
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(13, 3.6 * rows), squeeze=False)
        for ax, (scen, fam) in zip(axes.flat, scen_fams):
            loads = [lo for lo in LOADS if any(find(runs, scen, fam, t, lo) for t in TARGETS)]
            width = 0.8 / len(TARGETS)
            for i, t in enumerate(TARGETS):
                xs, p50, p99 = [], [], []
                for j, lo in enumerate(loads):
                    r = find(runs, scen, fam, t, lo)
                    if r and r["ok"]:
                        xs.append(j + (i - (len(TARGETS) - 1) / 2) * width)
                        p50.append(p(r, "p50") / 1000)
                        p99.append(p(r) / 1000)
                if xs:
                    ax.bar(xs, p99, width, color=COLORS[t], alpha=0.35, label=f"{t} p99")
                    ax.bar(xs, p50, width, color=COLORS[t], label=f"{t} p50")
            ax.set_xticks(range(len(loads)), [LOAD_TEXT[lo] for lo in loads])
            ax.set_yscale("log")
            ax.set_ylabel("latency (ms, log)")
            ax.set_title(f"{SCEN_TEXT[scen]} — {fam}", fontsize=10)
            ax.grid(axis="y", which="both", alpha=0.3)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.suptitle("Latency by load: p50 (solid) and p99 (light), lower is better", y=0.997, fontsize=12)
        fig.legend(handles, labels, loc="upper center", ncol=6, fontsize=9, bbox_to_anchor=(0.5, 0.985))
        fig.tight_layout(rect=(0, 0, 1, 0.955))
        fig.savefig(out / "latency.png", dpi=110)
        plt.close(fig)
        plots.append("latency.png")

        fig, axes = plt.subplots(2, 1, figsize=(14, 9))
        short = {"c1": "c1", "c8": "c8", "c32": "c32", "r200": "200/s", "r1000": "1000/s"}
        for ax, kind in zip(axes, ("closed", "open")):
            loads = ["c1", "c8", "c32"] if kind == "closed" else ["r200", "r1000"]
            groups = [(s, f, lo) for (s, f) in scen_fams for lo in loads
                      if any(find(runs, s, f, t, lo) for t in ("hos-proxy", "hos-proxy-grpc"))]
            width = 0.8 / len(TARGETS)
            for i, t in enumerate(TARGETS):
                vals = [(find(runs, s, f, t, lo) or {}).get("throughput_rps", 0) for (s, f, lo) in groups]
                ax.bar([j + (i - (len(TARGETS) - 1) / 2) * width for j in range(len(groups))], vals, width,
                       color=COLORS[t], label=t)
            ax.set_xticks(range(len(groups)),
                          ["\n".join(s.replace("read_", "").split("_") + [f, short[lo]])
                           for (s, f, lo) in groups], fontsize=7)
            ax.set_yscale("log")
            ax.set_ylabel("requests/s (log)")
            ax.set_title("closed loop (cN = N connections): throughput, higher is better" if kind == "closed" else
                         "open loop: achieved rate at an offered 200 or 1000 requests/s", fontsize=10, pad=24)
            ax.grid(axis="y", which="both", alpha=0.3)
            ax.legend(fontsize=8, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=110)
        plt.close(fig)
        plots.append("throughput.png")

    # Percentile ladder, 1x50 at 1 connection (gRPC too), and the reload runs.
    def ladder(fam, t):
        return find(runs, "grpc_1x50" if t == "hos-proxy-grpc" else "read_1x50", fam, t, "c1")

    if any(ladder(fam, t) for fam in ("sqlite", "redis") for t in TARGETS):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        qs = ["p50", "p90", "p99", "p99.9"]
        for fam, style in (("sqlite", "-"), ("redis", "--")):
            for t in TARGETS:
                r = ladder(fam, t)
                if r:
                    ax.plot(qs, [p(r, q) / 1000 for q in qs], style, marker="o", color=COLORS[t],
                            label=f"{t}, {fam}")
        ax.set_yscale("log")
        ax.set_ylabel("latency (ms, log)")
        ax.set_title("1 row x 50 features, 1 connection: latency percentiles")
        ax.grid(which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "percentiles_1x50.png", dpi=110)
        plt.close(fig)
        plots.append("percentiles_1x50.png")

    if rl:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [2, 1]})
        qs2 = ["p50", "p90", "p99", "p99.9", "max"]
        names = {"none": "no rewrites (baseline)", "atomic-rename": "rewrite by rename, 1/s",
                 "in-place-rewrite": "rewrite in place, 1/s",
                 "atomic-rename-yaml": "rewrite by rename, 1/s, YAML"}
        for ph, style in zip(rl["phases"], ("-", "--", ":", "-.")):
            a1.plot(qs2, [ph["latency_us"][q] / 1000 for q in qs2], style, marker="o", color="#d95f02",
                    label=names.get(ph["mode"], ph["mode"]))
        a1.set_yscale("log")
        a1.set_ylabel("latency (ms, log)")
        a1.set_title("hos-proxy, 1,000 views, read 1x50 at 8 connections", fontsize=10)
        a1.grid(which="both", alpha=0.3)
        a1.legend(fontsize=8)
        short_names = {"none": "no rewrites", "atomic-rename": "by rename", "in-place-rewrite": "in place",
                       "atomic-rename-yaml": "by rename, YAML"}
        a2.bar([short_names.get(ph["mode"], ph["mode"]) for ph in rl["phases"]],
               [ph["server"].get("rss_kib_max", 0) / 1024 for ph in rl["phases"]], color="#d95f02")
        a2.axhline(50, color="black", linestyle="--", linewidth=1)
        a2.text(-0.4, 52, "target 50 MiB", fontsize=8)
        a2.set_ylabel("max VmRSS (MiB)")
        a2.set_title("proxy RSS", fontsize=10)
        a2.tick_params(axis="x", labelsize=8)
        fig.tight_layout()
        fig.savefig(out / "reload.png", dpi=110)
        plt.close(fig)
        plots.append("reload.png")

    with open(out / "results.md", "a") as f:
        f.write("\n## Plots\n\n" + "\n".join(f"![{x}]({x})" for x in plots) + "\n")
    met = sum(verdicts)
    print(f"report: {met}/{len(verdicts)} targets met; wrote results.md and {', '.join(plots)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
