#!/usr/bin/python3
"""stomp.py (Debian's python3-stomp, stomp.py 8) against a running stompbox.

Run by e2e/python_test.go; by hand:

    /usr/bin/python3 e2e/testdata/stomp_py_interop.py --port 61613 \
        --server-heartbeat-ms 10000

Each check prints one line, "PASS <check>" or "FAIL <check>: <why>". Every
wait is bounded. The last line is SUCCESS_LINE and the exit status 0 when all
checks passed; otherwise "FAILED: ..." and exit status 1.

With --go2py-topic and --py2go-topic the script also talks to a go-stomp
client run by the Go test: it subscribes to --go2py-topic, prints
"READY go2py" and expects the Go client's messages there; then it publishes
to --py2go-topic for the Go client to check.
"""

import argparse
import os
import queue
import sys
import threading
import time
import traceback
import uuid

import stomp

SUCCESS_LINE = "stomp.py interop: all checks passed"

# WAIT bounds every wait for a frame that should come; QUIET is how long we
# listen for frames that should not.
WAIT = 5.0
QUIET = 0.3

# Message header values that need STOMP 1.2 escaping (colon, backslash,
# newline), and a non-ASCII body: both must survive the round trip.
ESCAPED_VALUE = "colon:back\\slash\nsecond line"
UTF8_BODY = "h\u00e9llo w\u00f6rld \u2713"
GO2PY_COUNT = 3
PY2GO_COUNT = 3

failures = []


def say(line):
    print(line, flush=True)


def check(name, ok, detail=""):
    """Print one PASS/FAIL line; return ok so callers can stop early."""
    if ok:
        say("PASS " + name)
    else:
        say("FAIL " + name + (": " + detail if detail else ""))
        failures.append(name)
    return ok


class Abort(Exception):
    """A check failed that later checks of the same section depend on."""


def require(name, ok, detail=""):
    if not check(name, ok, detail):
        raise Abort(name)


class Collector(stomp.ConnectionListener):
    """Records what one connection receives; every wait is bounded."""

    def __init__(self):
        self.connected = threading.Event()
        self.connected_frame = None
        self.disconnected = threading.Event()
        self.heartbeat = threading.Event()
        self.heartbeat_timeout = threading.Event()
        self.messages = queue.Queue()
        self.errors = queue.Queue()
        self._cond = threading.Condition()
        self._receipts = set()

    def on_connected(self, frame):
        self.connected_frame = frame
        self.connected.set()

    def on_message(self, frame):
        self.messages.put(frame)

    def on_error(self, frame):
        self.errors.put(frame)

    def on_receipt(self, frame):
        with self._cond:
            self._receipts.add(frame.headers.get("receipt-id"))
            self._cond.notify_all()

    def on_disconnected(self):
        self.disconnected.set()

    def on_heartbeat(self):
        self.heartbeat.set()

    def on_heartbeat_timeout(self):
        self.heartbeat_timeout.set()

    def wait_receipts(self, ids, timeout=WAIT):
        """Waits for every receipt id; returns those still missing."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                missing = [i for i in ids if i not in self._receipts]
                left = deadline - time.monotonic()
                if not missing or left <= 0:
                    return missing
                self._cond.wait(left)

    def next_message(self, timeout=WAIT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def next_error(self, timeout=WAIT):
        try:
            return self.errors.get(timeout=timeout)
        except queue.Empty:
            return None


def bounded(fn, timeout=WAIT):
    """Runs fn in a daemon thread; False if it did not return in time
    (stomp.py's own waits, e.g. in disconnect, are unbounded)."""
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive()


def connect(port, name, heartbeats=(0, 0)):
    """Opens a STOMP 1.2 connection and waits for CONNECTED."""
    # No timeout=: stomp.py keeps it as the socket's read timeout and drops
    # a connection that is quiet for that long.
    conn = stomp.Connection12([("127.0.0.1", port)], heartbeats=heartbeats,
                              heart_beat_receive_scale=2.5, reconnect_attempts_max=1)
    listener = Collector()
    conn.set_listener("collector", listener)
    conn.connect(wait=False)
    require(name + ": CONNECTED received", listener.connected.wait(WAIT),
            "no CONNECTED within %.0fs" % WAIT)
    return conn, listener


def disconnect(conn, listener, name):
    """DISCONNECT with a receipt: the RECEIPT comes, then the broker closes."""
    rid = "bye-" + uuid.uuid4().hex[:8]
    bounded(lambda: conn.disconnect(receipt=rid))
    missing = listener.wait_receipts([rid])
    ok = check(name + ": DISCONNECT answered with RECEIPT", not missing,
               "no RECEIPT receipt-id:%s" % rid)
    ok = check(name + ": connection closed after DISCONNECT",
               listener.disconnected.wait(WAIT)) and ok
    return ok


def drop(conn):
    """Best-effort close for a connection a failed section left open."""
    try:
        conn.transport.disconnect_socket()
    except Exception:
        pass


def seq(body):
    """The number in a "msg-<n>" body, for sorting."""
    return int(body.split("-", 1)[1])


def hdr(frame, key):
    return frame.headers.get(key)


def section_connect(args, conns):
    conn, lst = connect(args.port, "connect", heartbeats=(2000, 2000))
    conns["main"] = (conn, lst)
    f = lst.connected_frame
    check("connect: version 1.2", hdr(f, "version") == "1.2", "version=%r" % hdr(f, "version"))
    check("connect: server header", (hdr(f, "server") or "").startswith("stompbox/"),
          "server=%r" % hdr(f, "server"))
    check("connect: session header", bool(hdr(f, "session")))
    # CONNECTED carries the negotiated intervals: max(ours, the broker's)
    # each way, or 0 where either side said 0.
    negotiated = max(args.server_heartbeat_ms, 2000) if args.server_heartbeat_ms > 0 else 0
    want = "%d,%d" % (negotiated, negotiated)
    check("connect: heart-beat header " + want, hdr(f, "heart-beat") == want,
          "heart-beat=%r" % hdr(f, "heart-beat"))
    if args.server_heartbeat_ms > 0:
        # Negotiated: the broker sends every max(its interval, our 2000) ms.
        every = max(args.server_heartbeat_ms, 2000) / 1000.0
        check("connect: server heart-beat received", lst.heartbeat.wait(1.5 * every + 2),
              "no EOL heart-beat from the broker within %.1fs" % (1.5 * every + 2))


def expect_quiet(lst, name):
    extra = lst.next_message(QUIET)
    check(name, extra is None,
          "unexpected MESSAGE %r" % (extra and (extra.headers, extra.body),))


def section_queue(args, conns):
    producer, plst = conns["main"]
    q = "/queue/e2e.py." + uuid.uuid4().hex[:8]
    consumer, clst = connect(args.port, "queue consumer")
    conns["consumer"] = (consumer, clst)
    consumer.subscribe(q, id="sub-q", ack="client-individual", receipt="sub-q-r")
    require("queue: SUBSCRIBE ack:client-individual answered with RECEIPT",
            not clst.wait_receipts(["sub-q-r"]))

    rids = []
    for i in range(1, 11):
        rid = "send-%d" % i
        rids.append(rid)
        producer.send(q, "msg-%d" % i, content_type="text/plain",
                      headers={"receipt": rid, "e2e-seq": str(i)})
    missing = plst.wait_receipts(rids)
    require("queue: RECEIPT for each of 10 SENDs", not missing, "missing %s" % missing)

    got = []
    for i in range(1, 11):
        m = clst.next_message()
        require("queue: MESSAGE %d of 10 arrives" % i, m is not None, "timed out")
        got.append(m)
    bodies = [m.body for m in got]
    check("queue: 10 messages in order", bodies == ["msg-%d" % i for i in range(1, 11)],
          "bodies %s" % bodies)
    bad = []
    for i, m in enumerate(got, 1):
        h = m.headers
        want = {"destination": q, "subscription": "sub-q", "e2e-seq": str(i),
                "content-type": "text/plain"}
        for k, v in want.items():
            if h.get(k) != v:
                bad.append("msg-%d %s=%r want %r" % (i, k, h.get(k), v))
        for k in ("message-id", "ack"):
            if not h.get(k):
                bad.append("msg-%d has no %s" % (i, k))
        if "redelivered" in h:
            bad.append("msg-%d first delivery has redelivered:%s" % (i, h["redelivered"]))
    check("queue: headers destination, subscription, message-id, ack, own headers", not bad,
          "; ".join(bad))
    ids = [hdr(m, "message-id") for m in got]
    check("queue: message-ids unique", len(set(ids)) == len(ids), "ids %s" % ids)
    acks = [hdr(m, "ack") for m in got]
    check("queue: ack ids unique", len(set(acks)) == len(acks), "acks %s" % acks)

    rids = []
    for i in range(5):
        rid = "ack-%d" % (i + 1)
        rids.append(rid)
        consumer.ack(acks[i], receipt=rid)
    require("queue: ACK of msg-1..5 answered with RECEIPTs", not clst.wait_receipts(rids))
    consumer.nack(acks[5], receipt="nack-6")
    require("queue: NACK of msg-6 answered with RECEIPT", not clst.wait_receipts(["nack-6"]))
    m = clst.next_message()
    require("queue: NACKed msg-6 redelivered", m is not None and m.body == "msg-6",
            "got %r" % (m and (m.headers, m.body),))
    check("queue: redelivery has redelivered:true", hdr(m, "redelivered") == "true",
          "headers %s" % m.headers)
    check("queue: redelivery has delivery-count:2", hdr(m, "delivery-count") == "2",
          "headers %s" % m.headers)
    check("queue: redelivery keeps message-id, destination, subscription",
          hdr(m, "message-id") == ids[5] and hdr(m, "destination") == q
          and hdr(m, "subscription") == "sub-q", "headers %s" % m.headers)
    expect_quiet(clst, "queue: nothing else redelivered while msg-7..10 are unacked")

    disconnect(consumer, clst, "queue consumer")
    del conns["consumer"]

    again, alst = connect(args.port, "queue reconsumer")
    conns["reconsumer"] = (again, alst)
    again.subscribe(q, id="sub-q2", ack="client-individual", receipt="sub-q2-r")
    require("requeue: SUBSCRIBE answered with RECEIPT", not alst.wait_receipts(["sub-q2-r"]))
    rest = []
    for _ in range(5):
        m = alst.next_message()
        if m is None:
            break
        rest.append(m)
    bodies = [m.body for m in rest]
    require("requeue: the 5 unacked messages come back",
            sorted(bodies, key=seq) == ["msg-%d" % i for i in range(6, 11)], "bodies %s" % bodies)
    say("INFO requeue: order after reconnect: %s" % bodies)
    check("requeue: all redelivered:true",
          all(hdr(m, "redelivered") == "true" for m in rest),
          "headers %s" % [m.headers for m in rest])
    counts = {m.body: hdr(m, "delivery-count") for m in rest}
    want = {"msg-6": "3", "msg-7": "2", "msg-8": "2", "msg-9": "2", "msg-10": "2"}
    check("requeue: delivery-count 3 for msg-6, 2 for the rest", counts == want,
          "counts %s" % counts)
    check("requeue: subscription is the new one",
          all(hdr(m, "subscription") == "sub-q2" for m in rest))
    rids = []
    for i, m in enumerate(rest):
        rid = "ack2-%d" % i
        rids.append(rid)
        again.ack(hdr(m, "ack"), receipt=rid)
    check("requeue: ACKs answered with RECEIPTs", not alst.wait_receipts(rids))
    expect_quiet(alst, "requeue: no further messages after all ACKed")
    disconnect(again, alst, "queue reconsumer")
    del conns["reconsumer"]


def section_topic(args, conns):
    topic = "/topic/e2e.py." + uuid.uuid4().hex[:8]
    sub, slst = connect(args.port, "topic subscriber")
    conns["topic-sub"] = (sub, slst)
    pub, plst = connect(args.port, "topic publisher")
    conns["topic-pub"] = (pub, plst)
    sub.subscribe(topic, id="sub-t", receipt="sub-t-r")
    require("topic: SUBSCRIBE answered with RECEIPT", not slst.wait_receipts(["sub-t-r"]))
    rids = []
    for i in range(1, 4):
        rid = "tsend-%d" % i
        rids.append(rid)
        body = "topic-%d %s" % (i, UTF8_BODY)
        pub.send(topic, body, headers={"receipt": rid, "x-escaped": ESCAPED_VALUE})
    require("topic: RECEIPT for each SEND", not plst.wait_receipts(rids))
    got = []
    for _ in range(3):
        m = slst.next_message()
        if m is None:
            break
        got.append(m)
    want = ["topic-%d %s" % (i, UTF8_BODY) for i in range(1, 4)]
    check("topic: subscriber got 3 messages in order (UTF-8 bodies)",
          [m.body for m in got] == want, "bodies %r" % [m.body for m in got])
    check("topic: headers destination, subscription, message-id",
          all(hdr(m, "destination") == topic and hdr(m, "subscription") == "sub-t"
              and hdr(m, "message-id") for m in got), "headers %s" % [m.headers for m in got])
    check("topic: escaped header value survives",
          all(hdr(m, "x-escaped") == ESCAPED_VALUE for m in got),
          "x-escaped %r" % [hdr(m, "x-escaped") for m in got])
    expect_quiet(plst, "topic: publisher (not subscribed) gets nothing")
    disconnect(pub, plst, "topic publisher")
    del conns["topic-pub"]
    disconnect(sub, slst, "topic subscriber")
    del conns["topic-sub"]


def section_go(args, conns):
    conn, lst = connect(args.port, "go-stomp interop")
    conns["go"] = (conn, lst)
    conn.subscribe(args.go2py_topic, id="sub-go", receipt="sub-go-r")
    require("go2py: SUBSCRIBE answered with RECEIPT", not lst.wait_receipts(["sub-go-r"]))
    say("READY go2py")  # the Go test publishes with go-stomp now
    got = []
    for _ in range(GO2PY_COUNT):
        m = lst.next_message(3 * WAIT)
        if m is None:
            break
        got.append(m)
    want = ["from-go-%d %s" % (i, UTF8_BODY) for i in range(1, GO2PY_COUNT + 1)]
    check("go2py: stomp.py got go-stomp's %d messages in order" % GO2PY_COUNT,
          [m.body for m in got] == want, "bodies %r" % [m.body for m in got])
    check("go2py: headers from go-stomp (x-client, escaped value, destination)",
          all(hdr(m, "x-client") == "go-stomp" and hdr(m, "x-escaped") == ESCAPED_VALUE
              and hdr(m, "destination") == args.go2py_topic for m in got),
          "headers %s" % [m.headers for m in got])

    rids = []
    for i in range(1, PY2GO_COUNT + 1):
        rid = "py2go-%d" % i
        rids.append(rid)
        conn.send(args.py2go_topic, "from-py-%d %s" % (i, UTF8_BODY), content_type="text/plain",
                  headers={"receipt": rid, "x-client": "stomp.py", "x-escaped": ESCAPED_VALUE})
    check("py2go: RECEIPT for each SEND to the go-stomp subscriber's topic",
          not lst.wait_receipts(rids))
    say("SENT py2go %d" % PY2GO_COUNT)
    disconnect(conn, lst, "go-stomp interop")
    del conns["go"]


def section_error(args, conns):
    conn, lst = connect(args.port, "error")
    conns["error"] = (conn, lst)
    conn.send("/foo/bar", "nowhere", headers={"receipt": "bad-dest"})
    e = lst.next_error()
    require("error: SEND to /foo/bar answered with ERROR", e is not None, "no ERROR frame")
    check("error: error-code:invalid-destination", hdr(e, "error-code") == "invalid-destination",
          "headers %s body %r" % (e.headers, e.body))
    check("error: message header present", bool(hdr(e, "message")), "headers %s" % e.headers)
    check("error: receipt-id of the bad frame", hdr(e, "receipt-id") == "bad-dest",
          "headers %s" % e.headers)
    check("error: retryable:false", hdr(e, "retryable") == "false", "headers %s" % e.headers)
    check("error: explanatory body", bool(e.body), "empty body")
    check("error: broker closes the connection after ERROR", lst.disconnected.wait(WAIT))
    check("error: no RECEIPT for the failed SEND", lst.wait_receipts(["bad-dest"], QUIET) == ["bad-dest"])
    drop(conn)
    del conns["error"]


def section_disconnect(args, conns):
    conn, lst = conns.pop("main")
    check("main connection: no heart-beat timeout seen", not lst.heartbeat_timeout.is_set())
    check("main connection: no ERROR seen", lst.errors.empty(),
          "ERROR %s" % (not lst.errors.empty() and lst.errors.get().headers))
    disconnect(conn, lst, "main connection")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--server-heartbeat-ms", type=int, default=10000,
                   help="the broker's -heartbeat, to check CONNECTED's heart-beat")
    p.add_argument("--go2py-topic", help="topic a go-stomp client publishes to")
    p.add_argument("--py2go-topic", help="topic a go-stomp client subscribes to")
    args = p.parse_args()
    say("INFO stomp.py %s, Python %s" % (".".join(map(str, stomp.__version__)),
                                        sys.version.split()[0]))

    sections = [section_connect, section_queue, section_topic]
    if args.go2py_topic and args.py2go_topic:
        sections.append(section_go)
    sections += [section_error, section_disconnect]
    conns = {}
    for section in sections:
        try:
            section(args, conns)
        except Abort:
            pass  # its FAIL line is printed
        except Exception:
            check(section.__name__, False, "exception:\n" + traceback.format_exc())
        if section is section_connect and "main" not in conns:
            break  # nothing else can work
    for conn, _ in conns.values():
        drop(conn)

    if failures:
        say("FAILED: %d check(s): %s" % (len(failures), ", ".join(failures)))
        code = 1
    else:
        say(SUCCESS_LINE)
        code = 0
    sys.stdout.flush()
    sys.stderr.flush()
    # stomp.py's receiver and heart-beat threads must not delay the exit.
    os._exit(code)


if __name__ == "__main__":
    main()
