//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

// Helpers of the cluster-mode suite (cluster_test.go): a real nats-server
// process with JetStream, built from the module go.mod pins, and stompbox
// processes joined to it with -cluster-nats.

const (
	// natsStartTimeout bounds the wait for nats-server to accept clients
	// (JetStream recovers its store before it listens).
	natsStartTimeout = 15 * time.Second
	// natsStopTimeout bounds a graceful nats-server shutdown after SIGTERM.
	natsStopTimeout = 10 * time.Second
	// clusterReadyTimeout bounds the wait for a node's /readyz to answer
	// 200: the first JetStream round trip (stream creation) included.
	clusterReadyTimeout = 20 * time.Second
	// clusterRecvTimeout bounds one MESSAGE a go-stomp client waits for.
	clusterRecvTimeout = 10 * time.Second
)

var (
	natsBuildOnce sync.Once
	natsBuildPath string
	natsBuildErr  error
)

// natsServerBinary builds the nats-server of the version go.mod pins once
// per package run (never with -race: it is the environment, not the code
// under test) and returns its path.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	natsBuildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			natsBuildErr = err
			return
		}
		natsBuildPath = filepath.Join(binDir, "nats-server")
		args := []string{"build", "-o", natsBuildPath, "github.com/nats-io/nats-server/v2"}
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool(), args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			natsBuildErr = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	})
	if natsBuildErr != nil {
		t.Fatal(natsBuildErr)
	}
	return natsBuildPath
}

// natsProc is a nats-server child process with JetStream on a fixed port
// and store directory, so that it can be killed and started again as the
// same server with the same streams.
type natsProc struct {
	t        *testing.T
	port     int
	storeDir string
	log      *syncBuffer // every run's output, in order

	cmd     *exec.Cmd
	done    chan struct{} // closed once the current run's Wait returned
	waitErr error         // valid after done
}

// startNATS starts nats-server -js on 127.0.0.1 with a free port (taken
// from 127.0.0.1:0) and a fresh store directory, and waits until it
// accepts clients. It is stopped at cleanup; its log is shown when the
// test failed.
func startNATS(t *testing.T) *natsProc {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	n := &natsProc{t: t, port: port, storeDir: t.TempDir(), log: &syncBuffer{}}
	t.Cleanup(func() {
		n.stop()
		if t.Failed() {
			t.Logf("nats-server log:\n%s", n.log.String())
		}
	})
	n.start()
	return n
}

// url is the nats:// URL stompbox nodes are given.
func (n *natsProc) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// start runs the server (again) on n's port and store directory and waits,
// bounded, until a client gets its INFO line.
func (n *natsProc) start() {
	t := n.t
	t.Helper()
	cmd := exec.Command(natsServerBinary(t), "-js", "-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-sd", n.storeDir)
	cmd.SysProcAttr = childProcAttr()
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	done := make(chan struct{})
	n.cmd, n.done = cmd, done
	go func() {
		n.waitErr = cmd.Wait()
		close(done)
	}()
	deadline := time.Now().Add(natsStartTimeout)
	for {
		select {
		case <-done:
			t.Fatalf("nats-server exited at start: %v\n%s", n.waitErr, n.log.String())
		default:
		}
		if natsGreets(n.port) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server did not accept clients on port %d within %v:\n%s", n.port, natsStartTimeout, n.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// natsGreets says whether a NATS server on port answers a new connection
// with its INFO line within a second.
func natsGreets(port int) bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "INFO ")
}

// kill9 ends the server as a crash does and waits for it to be gone.
func (n *natsProc) kill9() {
	n.t.Helper()
	_ = n.cmd.Process.Kill()
	select {
	case <-n.done:
	case <-time.After(exitTimeout):
		n.t.Fatal("nats-server did not die after SIGKILL")
	}
}

// stop shuts a running server down with SIGTERM, killing it if it has not
// exited within natsStopTimeout; a server already gone is left alone.
func (n *natsProc) stop() {
	if n.cmd == nil {
		return
	}
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(natsStopTimeout):
		n.t.Errorf("nats-server did not exit within %v of SIGTERM; killing it", natsStopTimeout)
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// clusterNode is a stompbox process in cluster mode.
type clusterNode struct {
	*brokerProc
	name  string
	admin string // /metrics, /healthz, /readyz
}

// startClusterNode runs stompbox joined to the NATS server at natsURL as
// node name, every listener on its own 127.0.0.1:0 port (startBroker), plus
// extra flags, and waits until its /readyz answers 200. A node still
// running at cleanup is stopped there (SIGTERM, clean exit required) after
// the clients dialled later have disconnected and before its nats-server
// stops; a killed one is left alone.
func startClusterNode(t *testing.T, natsURL, name string, extra ...string) *clusterNode {
	t.Helper()
	flags := append([]string{"-cluster-nats", natsURL, "-cluster-node", name}, extra...)
	n := &clusterNode{brokerProc: startBroker(t, flags...), name: name}
	t.Cleanup(func() {
		select {
		case <-n.done:
		default:
			n.stop()
		}
	})
	n.admin = listenAttr(t, n.brokerProc, "admin")
	n.waitReady(t, http.StatusOK, clusterReadyTimeout)
	return n
}

// readyz fetches the node's /readyz: its status code and body. A request
// that fails (the process is gone) is status 0 with the error as body.
func (n *clusterNode) readyz() (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.admin+"/readyz", nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(body)
}

// waitReady polls /readyz until it answers status, within timeout, and
// returns that answer's body.
func (n *clusterNode) waitReady(t *testing.T, status int, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := n.readyz()
		if code == status {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: /readyz answered %d %q after %v, want %d", n.name, code, body, timeout, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dialCluster opens a go-stomp session to addr, disconnected (bounded) at
// cleanup; an error then is ignored, as the node may have been killed.
func dialCluster(t *testing.T, addr string) *stomp.Conn {
	t.Helper()
	c, err := stomp.Dial("tcp", addr, stomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = bounded(c.Disconnect) })
	return c
}

// recvCluster returns the next MESSAGE of sub within timeout.
func recvCluster(t *testing.T, sub *stomp.Subscription, timeout time.Duration) *stomp.Message {
	t.Helper()
	select {
	case m, ok := <-sub.C:
		if !ok {
			t.Fatalf("subscription to %s closed", sub.Destination())
		}
		if m.Err != nil {
			t.Fatalf("subscription to %s: %v", sub.Destination(), m.Err)
		}
		return m
	case <-time.After(timeout):
		t.Fatalf("no message on %s within %v", sub.Destination(), timeout)
	}
	return nil
}

// sendQueue sends body to a queue as a persistent message and waits for
// its RECEIPT: in cluster mode, JetStream has stored it.
func sendQueue(t *testing.T, c *stomp.Conn, dest, body string) {
	t.Helper()
	if err := c.Send(dest, "text/plain", []byte(body), stomp.SendOpt.Receipt, stomp.SendOpt.Header("persistent", "true")); err != nil {
		t.Fatalf("SEND %q to %s: %v", body, dest, err)
	}
}

// rawClusterSend writes CONNECT and then a SEND of body to dest with
// receipt r1 on a plain TCP connection to addr and returns the frame that
// answers the SEND.
func rawClusterSend(t *testing.T, addr, dest, body string) hostileFrame {
	t.Helper()
	c, r := connectHostile(t, addr, "0,0")
	var frame bytes.Buffer
	fmt.Fprintf(&frame, "SEND\ndestination:%s\npersistent:true\nreceipt:r1\ncontent-length:%d\n\n%s\x00", dest, len(body), body)
	writeHostile(t, c, frame.String())
	f, err := readHostileFrame(c, r, hostileWait)
	if err != nil {
		t.Fatalf("the answer to SEND %s: %v", dest, err)
	}
	return f
}
