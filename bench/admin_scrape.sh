#!/usr/bin/env bash
# bench/admin_scrape.sh: what watching the broker through its admin API
# costs a running benchmark. A stompbox holds CONNS idle WebSocket
# connections (heart-beats every 10 s, one subscription each) while
# stompbench runs the fixed-rate latency scenario, REPS times without and
# REPS times with the admin API scraped every second (overview, the
# first page of connections sorted by bytes out, the first page of
# destinations: what the console asks for), interleaved, the order
# flipped each repetition. It prints the broker's CPU (% of one core over
# each run, from /proc) and the latencies, medians per mode, and the
# scrapes' round trips.
#
#   bench/admin_scrape.sh                 # 10,000 connections, 3 x 2 runs of 20 s
#   CONNS=2000 DUR=5s REPS=1 bench/admin_scrape.sh
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
CONNS=${CONNS:-10000}
RATE=${RATE:-10000}
DUR=${DUR:-20s}

log() { printf '%s admin_scrape: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

work=$(mktemp -d /tmp/stompbox-scrape.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

log "building stompbox and stompbench"
go build -o "$work/stompbox" ./cmd/stompbox
go build -o "$work/stompbench" ./cmd/stompbench

# The open-file limit must hold CONNS sockets in the broker and in the
# generator that holds them.
need=$((CONNS + 256))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need" ]; then
	log "CONNS=$CONNS needs $need open files; the hard limit is $(ulimit -Hn)"
	exit 2
fi
ulimit -Sn "$need"

tcp=$(free_port) http=$(free_port) admin=$(free_port)
"$work/stompbox" -auth-anonymous -journal-dir "$work/journal" \
	-listen "127.0.0.1:$tcp" -http-listen "127.0.0.1:$http" -admin-listen "127.0.0.1:$admin" \
	-max-connections -1 -max-connections-per-ip -1 -connection-rate-per-ip -1 \
	-max-frames-per-second 0 -max-bytes-per-second 0 >"$work/stompbox.log" 2>&1 &
sb_pid=$!
pids+=("$sb_pid")
api="http://127.0.0.1:$admin/api"
for _ in $(seq 1 100); do
	curl -sf "$api/overview" >/dev/null 2>&1 && break
	sleep 0.1
done

log "opening $CONNS idle WebSocket connections"
"$work/stompbench" -url "ws://127.0.0.1:$http/ws" -scenario idle -connections "$CONNS" \
	-duration 2h -timeout 3h -heartbeat 10000,10000 >"$work/idle.log" 2>&1 &
pids+=("$!")
open=0
for _ in $(seq 1 600); do
	open=$(curl -sf "$api/overview" | python3 -c 'import json,sys; print(json.load(sys.stdin)["connections"])' 2>/dev/null || echo 0)
	[ "$open" -ge "$CONNS" ] && break
	sleep 0.2
done
if [ "$open" -lt "$CONNS" ]; then
	log "only $open of $CONNS connections opened"
	cat "$work/idle.log" >&2
	exit 1
fi
sleep 2 # let the last RECEIPTs and the first heart-beats settle

scrape="$api/overview,$api/connections?limit=100&sort=bytes_out&order=desc,$api/destinations?limit=100"
raw="$work/raw"
mkdir -p "$raw"
for rep in $(seq 1 "$REPS"); do
	modes=(plain scraped)
	if [ $((rep % 2)) = 0 ]; then modes=(scraped plain); fi
	for mode in "${modes[@]}"; do
		extra=()
		if [ "$mode" = scraped ]; then extra=(-scrape "$scrape" -scrape-every 1s); fi
		log "rep $rep: latency at $RATE msgs/s for $DUR, $mode"
		"$work/stompbench" -json -url "stomp://127.0.0.1:$tcp" -scenario latency -rate "$RATE" \
			-duration "$DUR" -destination "/queue/scrape-$mode-$rep" -broker-pid "$sb_pid" \
			"${extra[@]}" >"$raw/$mode.$rep.json"
	done
done

python3 - "$raw" "$CONNS" "$RATE" "$DUR" <<'PY'
import json, os, statistics, sys
raw, conns, rate, dur = sys.argv[1:]
runs = {"plain": [], "scraped": []}
for f in sorted(os.listdir(raw)):
    runs[f.split(".")[0]].append(json.load(open(os.path.join(raw, f))))
def med(mode, get):
    return statistics.median(get(r) for r in runs[mode])
cpu = {m: med(m, lambda r: r["cpu_pct"]) for m in runs}
print(f"{conns} idle WebSocket connections held; latency scenario at {rate} msgs/s for {dur}; medians of {len(runs['plain'])}")
print("| | broker CPU, % of one core (runs) | p50 / p99 latency, ms |")
print("|---|---:|---:|")
for m in ("plain", "scraped"):
    each = " ".join(f"{r['cpu_pct']:.1f}" for r in runs[m])
    print(f"| {m} | **{cpu[m]:.1f}** ({each}) | {med(m, lambda r: r['latencies']['p50_us'])/1e3:.2f} / {med(m, lambda r: r['latencies']['p99_us'])/1e3:.2f} |")
add = cpu["scraped"] - cpu["plain"]
print(f"\nScraping added {add:+.2f} points of a core ({add / cpu['plain'] * 100:+.1f} % of the broker's CPU).")
sc = [r["scrape"] for r in runs["scraped"]]
n = sum(s["scrapes"] for s in sc)
print(f"Scrapes: {n} (3 URLs a second), {statistics.median(s['bytes'] / s['scrapes'] for s in sc):.0f} B each on average; "
      f"round trip p50 {statistics.median(s['latencies']['p50_us'] for s in sc)/1e3:.2f} ms, "
      f"p99 {statistics.median(s['latencies']['p99_us'] for s in sc)/1e3:.2f} ms.")
PY
