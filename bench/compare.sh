#!/usr/bin/env bash
# bench/compare.sh: the same load, measured by cmd/stompbench, against
# stompbox and RabbitMQ (STOMP and Web-STOMP plugins), interleaved, REPS
# times; the medians, ratios and charts go into docs/benchmarks.md
# (between its "compare" markers) and bench/out/.
#
#   bench/compare.sh              # full run (about 15 minutes on 2 cores)
#   QUICK=1 bench/compare.sh      # small counts, one repetition, bench/out only: a smoke run
#
# It installs rabbitmq-server from Debian when it is missing (apt-get), and
# runs a private RabbitMQ node (its own name, ports, data and cookie under a
# temporary directory) next to any RabbitMQ already running, and a stompbox
# with the limits that would throttle a benchmark lifted. Both are stopped
# on exit. Ports are picked free on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
QUICK=${QUICK:-0}
OUT=${OUT:-bench/out}
if [ "$QUICK" = 1 ]; then REPS=${REPS_QUICK:-1}; fi

log() { printf '%s compare: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

if ! command -v rabbitmq-server >/dev/null; then
	log "installing rabbitmq-server (Debian)"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
	# The package starts its own service; the benchmark uses a private node.
	(systemctl stop rabbitmq-server || service rabbitmq-server stop) >/dev/null 2>&1 || true
fi

work=$(mktemp -d /tmp/stompbox-compare.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	if [ -n "${RABBITMQ_NODENAME:-}" ]; then
		timeout 30 "${rq_bin:-/usr/lib/rabbitmq/bin}/rabbitmqctl" -n "$RABBITMQ_NODENAME" stop >/dev/null 2>&1 || true
	fi
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() { # host port seconds
	for _ in $(seq 1 $(($3 * 10))); do
		if python3 -c "import socket,sys; socket.create_connection(('$1',$2),0.2).close()" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	log "nothing listens on $1:$2 after $3 s"
	return 1
}

log "building stompbox and stompbench"
go build -o "$work/stompbox" ./cmd/stompbox
go build -o "$work/stompbench" ./cmd/stompbench

# stompbox, limits that throttle a benchmark lifted, with a journal: the
# persistent scenario's messages are on disk before their RECEIPT, as
# RabbitMQ's are (durable queue, publisher confirms).
sb_tcp=$(free_port) sb_http=$(free_port) sb_admin=$(free_port)
"$work/stompbox" -auth-anonymous -journal-dir "$work/journal" \
	-listen "127.0.0.1:$sb_tcp" -http-listen "127.0.0.1:$sb_http" \
	-admin-listen "127.0.0.1:$sb_admin" -max-connections -1 -max-connections-per-ip -1 \
	-connection-rate-per-ip -1 -max-frames-per-second 0 -max-bytes-per-second 0 -pprof \
	>"$work/stompbox.log" 2>&1 &
sb_pid=$!
pids+=("$sb_pid")
wait_port 127.0.0.1 "$sb_tcp" 30

# A private RabbitMQ node.
rq_amqp=$(free_port) rq_dist=$(free_port) rq_stomp=$(free_port) rq_ws=$(free_port)
mkdir -p "$work/rmq/home" "$work/rmq/mnesia" "$work/rmq/log"
cat >"$work/rmq/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$rq_amqp
stomp.listeners.tcp.1 = 127.0.0.1:$rq_stomp
web_stomp.tcp.port = $rq_ws
web_stomp.tcp.ip = 127.0.0.1
# Relaxed like stompbox's limits: Web-STOMP closes a connection that has
# sent nothing for 60 s, which a topic subscriber of a long run is.
web_stomp.ws_opts.idle_timeout = 3600000
web_stomp.cowboy_opts.idle_timeout = 3600000
CONF
echo '[rabbitmq_stomp,rabbitmq_web_stomp].' >"$work/rmq/enabled_plugins"
export HOME="$work/rmq/home" RABBITMQ_NODENAME="stompbench$$@localhost" RABBITMQ_NODE_PORT="$rq_amqp" \
	RABBITMQ_DIST_PORT="$rq_dist" RABBITMQ_CONFIG_FILE="$work/rmq/rabbitmq.conf" \
	RABBITMQ_ENABLED_PLUGINS_FILE="$work/rmq/enabled_plugins" RABBITMQ_MNESIA_BASE="$work/rmq/mnesia" \
	RABBITMQ_LOG_BASE="$work/rmq/log" RABBITMQ_PID_FILE="$work/rmq/pid"
# Debian's /usr/sbin wrappers switch to the rabbitmq user, who cannot
# read this private directory: the node runs as the caller instead.
rq_bin=/usr/lib/rabbitmq/bin
[ -x "$rq_bin/rabbitmq-server" ] || rq_bin=$(dirname "$(command -v rabbitmq-server)")
"$rq_bin/rabbitmq-server" >"$work/rabbitmq.log" 2>&1 &
pids+=("$!")
if ! timeout 120 "$rq_bin/rabbitmqctl" -n "$RABBITMQ_NODENAME" wait "$RABBITMQ_PID_FILE" >/dev/null; then
	log "RabbitMQ did not start:"
	tail -20 "$work/rabbitmq.log" >&2
	exit 1
fi
wait_port 127.0.0.1 "$rq_stomp" 60
wait_port 127.0.0.1 "$rq_ws" 60
rq_pid=$(cat "$RABBITMQ_PID_FILE")
log "stompbox pid $sb_pid (stomp $sb_tcp, ws $sb_http); RabbitMQ pid $rq_pid (stomp $rq_stomp, ws $rq_ws)"

url() { # broker transport
	case "$1/$2" in
	stompbox/tcp) echo "stomp://127.0.0.1:$sb_tcp" ;;
	stompbox/ws) echo "ws://127.0.0.1:$sb_http/ws" ;;
	rabbitmq/tcp) echo "stomp://127.0.0.1:$rq_stomp" ;;
	rabbitmq/ws) echo "ws://127.0.0.1:$rq_ws/ws" ;;
	esac
}
pid_of() { if [ "$1" = stompbox ]; then echo "$sb_pid"; else echo "$rq_pid"; fi; }

# name transport stompbench-arguments (counts scaled down by QUICK).
n() { if [ "$QUICK" = 1 ]; then echo $(($1 / 20)); else echo "$1"; fi; }
d() { if [ "$QUICK" = 1 ]; then echo 2s; else echo "$1"; fi; }
scenarios=(
	"queue-1-1-tcp|tcp|-scenario queue -producers 1 -consumers 1 -messages $(n 200000)"
	"queue-4-4-tcp|tcp|-scenario queue -producers 4 -consumers 4 -messages $(n 50000)"
	"queue-1-1-ws|ws|-scenario queue -producers 1 -consumers 1 -messages $(n 200000)"
	"topic-1-100-ws|ws|-scenario topic -subscribers 100 -messages $(n 20000)"
	"latency-10k-tcp|tcp|-scenario latency -rate 10000 -duration $(d 10s)"
	"persistent-tcp|tcp|-scenario persistent -producers 1 -consumers 1 -window 64 -messages $(n 20000)"
	"idle-ws|ws|-scenario idle -connections $(n 5000) -duration $(d 25s) -heartbeat 10000,10000"
)

raw="$OUT/raw"
rm -rf "$raw" && mkdir -p "$raw" "$OUT/profiles"
for rep in $(seq 1 "$REPS"); do
	# Interleaved, the order flipped every repetition: a slow phase of a
	# shared machine hits both brokers.
	brokers=(stompbox rabbitmq)
	if [ $((rep % 2)) = 0 ]; then brokers=(rabbitmq stompbox); fi
	for sc in "${scenarios[@]}"; do
		IFS='|' read -r name transport args <<<"$sc"
		for broker in "${brokers[@]}"; do
			extra=(-host /)
			if [ "$broker" = rabbitmq ]; then extra+=(-login guest -passcode guest); fi # stompbox: anonymous
			if [[ $name == idle-* ]]; then extra+=(-broker-pid "$(pid_of "$broker")"); fi
			# Each run gets its own destination: nothing left over by another.
			dest=/queue/cmp-$name-$rep
			if [[ $name == topic-* || $name == idle-* ]]; then dest=/topic/cmp-$name-$rep; fi
			log "rep $rep: $name on $broker"
			prof=()
			if [ "$broker" = stompbox ] && [ "$rep" = 1 ] && [[ $name != idle-* ]]; then
				# One CPU profile of stompbox per scenario, taken meanwhile.
				curl -s -o "$OUT/profiles/$name.pprof" \
					"http://127.0.0.1:$sb_admin/debug/pprof/profile?seconds=5" &
				prof=("$!")
			fi
			# shellcheck disable=SC2086 # args is a word list on purpose
			"$work/stompbench" -json -url "$(url "$broker" "$transport")" -destination "$dest" \
				-timeout 10m "${extra[@]}" $args >"$raw/$name.$broker.$rep.json" ||
				log "rep $rep: $name on $broker FAILED (see $raw/$name.$broker.$rep.json)"
			for p in "${prof[@]}"; do wait "$p" || true; done
		done
	done
done

for f in "$OUT"/profiles/*.pprof; do
	[ -s "$f" ] || continue
	go tool pprof -top -nodecount 12 "$work/stompbox" "$f" >"${f%.pprof}.top.txt" 2>/dev/null || true
done
doc=docs/benchmarks.md
if [ "$QUICK" = 1 ]; then doc=- ; fi # a smoke run's numbers do not go into the docs
python3 bench/report.py "$raw" "$OUT" "$doc"
log "done: $OUT/compare.md $([ "$doc" = - ] || echo "and $doc")"
