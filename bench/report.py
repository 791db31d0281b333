#!/usr/bin/env python3
"""bench/report.py RAW OUT DOC: the tables and charts of bench/compare.sh.

RAW holds one stompbench -json result per file, named
<scenario>.<broker>.<repetition>.json. It writes OUT/compare.md and
OUT/<chart>.svg (and .png when a headless Chromium is at hand), and puts
the tables between the "compare" markers of DOC (docs/benchmarks.md),
appending the section when the markers are missing; DOC "-" leaves the
docs alone.
"""
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys

BROKERS = ("stompbox", "rabbitmq")
BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"

# scenario -> (what is compared, how to read it from a result, unit, higher is better)
METRICS = {
    "queue-1-1-tcp": [("msgs/s", lambda r: r["rate"], "", True)],
    "queue-4-4-tcp": [("msgs/s", lambda r: r["rate"], "", True)],
    "queue-1-1-ws": [("msgs/s", lambda r: r["rate"], "", True)],
    "topic-1-100-ws": [("deliveries/s", lambda r: r["rate"], "", True)],
    "latency-10k-tcp": [
        ("p50 ms", lambda r: r["latencies"]["p50_us"] / 1000, "ms", False),
        ("p99 ms", lambda r: r["latencies"]["p99_us"] / 1000, "ms", False),
        ("p99.9 ms", lambda r: r["latencies"]["p99_9_us"] / 1000, "ms", False),
    ],
    "persistent-tcp": [("msgs/s", lambda r: r["rate"], "", True)],
    "idle-ws": [
        ("KiB per idle connection", lambda r: r["rss_per_conn"] / 1024, "KiB", False),
        ("broker CPU % idle", lambda r: r["cpu_pct"], "%", False),
        ("connections/s", lambda r: r["connect_rate"], "", True),
    ],
}


def load(raw):
    runs = {}
    for path in sorted(glob.glob(os.path.join(raw, "*.json"))):
        scenario, broker, rep = os.path.basename(path)[: -len(".json")].rsplit(".", 2)
        try:
            with open(path) as f:
                result = json.load(f)
        except (OSError, ValueError) as e:
            result = {"ok": False, "errors": ["unreadable result: %s" % e]}
        runs.setdefault(scenario, {}).setdefault(broker, []).append((int(rep), result))
    return runs


def fmt(v):
    if v >= 100:
        return "{:,.0f}".format(v)
    if v >= 10:
        return "{:.1f}".format(v)
    return "{:.2f}".format(v)


def table(runs):
    rows, failures, chart = [], [], []
    for scenario, metrics in METRICS.items():
        for name, get, unit, higher in metrics:
            cells, medians = [], {}
            for broker in BROKERS:
                values = []
                for rep, r in sorted(runs.get(scenario, {}).get(broker, [])):
                    if not r.get("ok"):
                        failure = "%s on %s (run %d): %s" % (scenario, broker, rep, "; ".join(r.get("errors") or ["failed"]))
                        if failure not in failures:
                            failures.append(failure)
                        continue
                    try:
                        values.append(get(r))
                    except (KeyError, TypeError):
                        failures.append("%s on %s (run %d): no %s" % (scenario, broker, rep, name))
                if values:
                    medians[broker] = statistics.median(values)
                    cells.append("**%s** (%s)" % (fmt(medians[broker]), " ".join(fmt(v) for v in values)))
                else:
                    cells.append("-")
            ratio = "-"
            if len(medians) == 2 and min(medians.values()) > 0:
                s, q = medians["stompbox"], medians["rabbitmq"]
                ratio = "%.1fx" % (s / q if higher else q / s)
                chart.append((scenario + " " + name, s, q, higher))
            rows.append("| %s | %s | %s | %s | %s |" % (scenario, name, cells[0], cells[1], ratio))
    head = ["| scenario | measure | stompbox: median (runs) | RabbitMQ: median (runs) | stompbox better by |",
            "|---|---|---:|---:|---:|"]
    return head + rows, failures, chart


def svg(chart):
    """A bar chart of stompbox against RabbitMQ per measure, each pair
    scaled to its larger value (lengths compare within a pair)."""
    w, row = 900, 34
    h = 40 + row * len(chart)
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">' % (w, h),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="10" y="20" font-size="14">stompbox (blue) and RabbitMQ (orange), each pair scaled to its larger value</text>']
    for i, (label, s, q, higher) in enumerate(chart):
        y = 36 + i * row
        top = max(s, q)
        out.append('<text x="10" y="%d">%s</text>' % (y + 14, label))
        for j, (v, color) in enumerate(((s, "#3b6fd4"), (q, "#f08c2e"))):
            length = 0 if top == 0 else 480 * v / top
            out.append('<rect x="300" y="%d" width="%.1f" height="12" fill="%s"/>' % (y + j * 13, length, color))
            out.append('<text x="%.1f" y="%d">%s</text>' % (306 + length, y + 10 + j * 13, fmt(v)))
    out.append("</svg>")
    return "\n".join(out)


def profiles(out, top=6):
    """The heaviest functions of each stompbox CPU profile (flat time),
    from OUT/profiles/<scenario>.top.txt (go tool pprof -top)."""
    lines = []
    for path in sorted(glob.glob(os.path.join(out, "profiles", "*.top.txt"))):
        scenario = os.path.basename(path)[: -len(".top.txt")]
        with open(path) as f:
            rows = [l.split() for l in f]
        # The table's rows: flat flat% sum% cum cum% name.
        rows = [r for r in rows if len(r) >= 6 and r[1].endswith("%") and r[2].endswith("%") and r[4].endswith("%")]
        named = ["`%s` %s" % (" ".join(r[5:]), r[1]) for r in rows][:top]
        if named:
            lines.append("- %s: %s" % (scenario, ", ".join(named)))
    if not lines:
        return []
    return ["Where stompbox spends its CPU in each scenario (a 5 s profile taken during the first repetition, "
            "the heaviest functions by their own time):", ""] + lines + [""]


def to_png(svg_path, png_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        return False
    try:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--screenshot=" + os.path.abspath(png_path),
                        "--window-size=900,%d" % 600, "file://" + os.path.abspath(svg_path)],
                       check=True, timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return False
    return os.path.exists(png_path)


def main():
    raw, out, doc = sys.argv[1:4]
    runs = load(raw)
    rows, failures, chart = table(runs)
    os.makedirs(out, exist_ok=True)
    svg_path = os.path.join(out, "compare.svg")
    with open(svg_path, "w") as f:
        f.write(svg(chart))
    png = to_png(svg_path, os.path.join(out, "compare.png"))
    reps = max((len(v) for s in runs.values() for v in s.values()), default=0)
    section = [BEGIN, "",
               "Written by `bench/compare.sh` (%d repetition%s, interleaved); every run counted every message "
               "(a loss or duplicate fails it)." % (reps, "" if reps == 1 else "s"), ""] + rows + [""]
    if failures:
        section += ["Runs that failed (not in the medians):", ""] + ["- " + f for f in failures] + [""]
    if png and doc != "-":
        # The chart goes next to the docs, which link it.
        img = os.path.join(os.path.dirname(doc), "img", "compare.png")
        os.makedirs(os.path.dirname(img), exist_ok=True)
        shutil.copyfile(os.path.join(out, "compare.png"), img)
        section += ["![stompbox and RabbitMQ, each pair scaled to its larger value](img/compare.png)", ""]
    section += profiles(out)
    section.append(END)
    text = "\n".join(section) + "\n"
    with open(os.path.join(out, "compare.md"), "w") as f:
        f.write(text)
    if doc == "-":
        return
    with open(doc) as f:
        body = f.read()
    if BEGIN in body and END in body:
        body = body[: body.index(BEGIN)] + text.rstrip("\n") + body[body.index(END) + len(END):]
    else:
        body = body.rstrip("\n") + "\n\n## stompbox and RabbitMQ side by side (`bench/compare.sh`)\n\n" + text
    with open(doc, "w") as f:
        f.write(body)
    for f_ in failures:
        print("failed:", f_, file=sys.stderr)


if __name__ == "__main__":
    main()
