#!/usr/bin/python3
"""The Python example of docs/quickstart.md, with stomp.py (Debian's
python3-stomp). The broker's address comes from --addr, else
$STOMPBOX_ADDR, else localhost:61613."""

import argparse
import os
import queue
import sys
import threading

import stomp

QUEUE = "/queue/orders"
WAIT = 10  # seconds to wait for each answer from the broker


class Listener(stomp.ConnectionListener):
    """Collects what the broker sends. stomp.py calls these methods on its
    own receiver thread, so they only hand frames over to the main thread."""

    def __init__(self):
        self.receipts = queue.Queue()
        self.messages = queue.Queue()
        self.disconnected = threading.Event()

    def on_receipt(self, frame):
        self.receipts.put(frame.headers["receipt-id"])

    def on_message(self, frame):
        self.messages.put(frame)

    def on_error(self, frame):
        # The broker closes the connection after an ERROR: error-code says
        # what went wrong, retryable whether trying again later can succeed.
        h = frame.headers
        print("ERROR %s (error-code %s, retryable %s)"
              % (h.get("message"), h.get("error-code"), h.get("retryable")), file=sys.stderr)
        self.receipts.put(None)  # wake the main thread
        self.messages.put(None)

    def on_disconnected(self):
        self.disconnected.set()


def next_item(q, what):
    try:
        item = q.get(timeout=WAIT)
    except queue.Empty:
        sys.exit("no %s within %d s" % (what, WAIT))
    if item is None:
        sys.exit("the broker sent an ERROR while we waited for " + what)
    return item


def main():
    parser = argparse.ArgumentParser(description="stompbox quickstart with stomp.py")
    parser.add_argument("--addr", default=os.environ.get("STOMPBOX_ADDR", "localhost:61613"),
                        help="stompbox native STOMP address, host:port (its -listen)")
    args = parser.parse_args()
    host, _, port = args.addr.rpartition(":")

    # heartbeats=(send, receive) in ms: we send one when we have been quiet
    # for 10 s and expect the broker to do the same.
    conn = stomp.Connection12([(host, int(port))], heartbeats=(10000, 10000))
    listener = Listener()
    conn.set_listener("quickstart", listener)
    conn.connect(wait=True)
    print("connected to %s: STOMP 1.2" % args.addr)

    # client-individual: the broker keeps each message until we ACK that
    # very message; one left unacknowledged at disconnect is redelivered.
    conn.subscribe(destination=QUEUE, id="orders", ack="client-individual")

    # The receipt header asks the broker for a RECEIPT once it has taken the
    # message (with -journal-dir, persistent:true means it is on disk first).
    conn.send(destination=QUEUE, body="order 2: one flat white", content_type="text/plain",
              headers={"persistent": "true"}, receipt="order-2")
    receipt = next_item(listener.receipts, "the RECEIPT")
    print("sent to %s; the broker sent RECEIPT %s" % (QUEUE, receipt))

    frame = next_item(listener.messages, "the message")
    print("received %r from %s (message-id %s)"
          % (frame.body, frame.headers["destination"], frame.headers["message-id"]))
    # STOMP 1.2 acknowledges by the MESSAGE's ack header.
    conn.ack(frame.headers["ack"])
    print("acknowledged")

    # stomp.py's DISCONNECT asks for a RECEIPT; once it is back, the broker
    # has processed everything before it (the ACK included), and stomp.py
    # closes the socket.
    conn.disconnect()
    if not listener.disconnected.wait(WAIT):
        sys.exit("not disconnected within %d s" % WAIT)
    print("disconnected")


if __name__ == "__main__":
    main()
