// Package server is stompbox's network edge and assembly: it builds the
// broker, accepts connections, and runs one driver per connection — a read
// loop that feeds the broker.Session and a write loop that flushes its
// output, with deadlines and heart-beats — and shuts everything down in
// order.
//
//	srv := server.New(server.Config{})
//	ln, _ := net.Listen("tcp", "127.0.0.1:0")
//	go srv.Serve(ln)              // returns ErrServerClosed after Shutdown
//	defer srv.Shutdown(ctx)
//
// Run does the whole assembly (journal, recovery, cluster, listeners,
// ordered shutdown) from Options, as cmd/stompbox does:
//
//	err := server.Run(ctx, server.Options{
//		Listen:     server.Listen{STOMP: ":61613", Admin: "127.0.0.1:61680"},
//		JournalDir: "/var/lib/stompbox/journal",
//	})
package server
