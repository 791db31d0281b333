// Command quickstart is the Go example of docs/quickstart.md. The broker's
// address comes from -addr, else $STOMPBOX_ADDR, else localhost:61613.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/go-stomp/stomp/v3"
)

func main() {
	defaultAddr := os.Getenv("STOMPBOX_ADDR")
	if defaultAddr == "" {
		defaultAddr = "localhost:61613"
	}
	addr := flag.String("addr", defaultAddr, "stompbox native STOMP address (its -listen)")
	flag.Parse()
	log.SetFlags(0)

	// Heart-beats: we send one when we have been quiet for 10 s and expect
	// the broker to do the same; the broker negotiates the final intervals.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := stomp.DialWithContext(ctx, "tcp", *addr,
		stomp.ConnOpt.HeartBeat(10*time.Second, 10*time.Second))
	if err != nil {
		log.Fatalf("connect to %s: %v", *addr, err)
	}
	fmt.Printf("connected to %s: STOMP %s, server %s\n", *addr, conn.Version(), conn.Server())

	// client-individual: the broker keeps each message until we ACK that
	// very message; one left unacknowledged at disconnect is redelivered.
	sub, err := conn.Subscribe("/queue/orders", stomp.AckClientIndividual)
	if err != nil {
		log.Fatalf("subscribe: %v", err)
	}

	// With SendOpt.Receipt, Send waits for the broker's RECEIPT: the broker
	// has taken the message (with -journal-dir, persistent:true means it is
	// on disk first) or Send returns the broker's ERROR.
	err = conn.Send("/queue/orders", "text/plain", []byte("order 1: two espressos"),
		stomp.SendOpt.Receipt,
		stomp.SendOpt.Header("persistent", "true"))
	if err != nil {
		log.Fatalf("send: %s", describe(err))
	}
	fmt.Println("sent to /queue/orders; the broker sent a RECEIPT")

	select {
	case msg := <-sub.C:
		if msg.Err != nil {
			log.Fatalf("receive: %s", describe(msg.Err))
		}
		fmt.Printf("received %q from %s (message-id %s)\n",
			msg.Body, msg.Destination, msg.Header.Get("message-id"))
		if err := conn.Ack(msg); err != nil {
			log.Fatalf("ack: %v", err)
		}
		fmt.Println("acknowledged")
	case <-time.After(10 * time.Second):
		log.Fatal("no message within 10s")
	}

	// UNSUBSCRIBE and DISCONNECT each wait for a RECEIPT too: once it is
	// back, the broker has processed everything before it, the ACK included.
	if err := sub.Unsubscribe(); err != nil {
		log.Fatalf("unsubscribe: %v", err)
	}
	if err := conn.Disconnect(); err != nil {
		log.Fatalf("disconnect: %v", err)
	}
	fmt.Println("disconnected")
}

// describe shows a broker ERROR frame's message, error-code and retryable
// headers, or any other error as it is.
func describe(err error) string {
	var e stomp.Error
	if errors.As(err, &e) && e.Frame != nil && e.Frame.Header.Get("error-code") != "" {
		return fmt.Sprintf("%s (error-code %s, retryable %s)",
			e.Message, e.Frame.Header.Get("error-code"), e.Frame.Header.Get("retryable"))
	}
	return err.Error()
}
