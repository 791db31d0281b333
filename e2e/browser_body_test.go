//go:build e2e

package e2e

import (
	"fmt"
	"slices"
	"testing"
)

// Scenarios of TestBrowser about what a message carries: binary and large
// bodies, escaped header values.

// testBinaryBody: a body of the bytes 0..255 (not UTF-8) goes out as
// stomp.js binaryBody and comes back equal, in a binary WebSocket message.
func testBinaryBody(t *testing.T, page *tab) {
	var res struct {
		Got []struct {
			Bytes         []int  `json:"bytes"`
			ContentType   string `json:"contentType"`
			ContentLength string `json:"contentLength"`
		} `json:"got"`
		Ev jsEvents `json:"ev"`
	}
	page.eval(t, `(async () => {
		const dest = '/queue/' + e2e.unique('e2e.binary');
		const c = await e2e.connect();
		const got = [];
		await e2e.subscribe(c, dest, (m) => got.push({
			bytes: Array.from(m.binaryBody),
			contentType: m.headers['content-type'] || '',
			contentLength: m.headers['content-length'] || '',
		}));
		const body = new Uint8Array(256);
		for (let i = 0; i < body.length; i++) {
			body[i] = i;
		}
		await e2e.publish(c, { destination: dest, binaryBody: body, headers: { 'content-type': 'application/octet-stream' } });
		await e2e.waitFor('the binary message', () => got.length > 0);
		await e2e.close(c);
		return { got, ev: c.ev };
	})()`, &res)

	if len(res.Got) != 1 {
		t.Fatalf("got %d messages, want 1", len(res.Got))
	}
	m := res.Got[0]
	want := make([]int, 256)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(m.Bytes, want) {
		t.Errorf("binary body came back as %v, want 0..255", m.Bytes)
	}
	if m.ContentType != "application/octet-stream" || m.ContentLength != "256" {
		t.Errorf("content-type %q content-length %q, want application/octet-stream 256", m.ContentType, m.ContentLength)
	}
	if kinds := res.Ev.messageKinds(); !slices.Equal(kinds, []string{"binary"}) {
		t.Errorf("MESSAGE arrived in WebSocket messages of type %v, want [binary] (the body is not UTF-8)", kinds)
	}
}

// testLargeBody: a 1 MiB text body round-trips, sent as one WebSocket
// message and split by stomp.js into 8 KiB messages.
func testLargeBody(t *testing.T, page *tab) {
	const size = 1 << 20
	var res []struct {
		Split  bool     `json:"split"`
		Got    []int    `json:"got"`
		Equal  bool     `json:"equal"`
		Ev     jsEvents `json:"ev"`
		Millis int      `json:"ms"`
	}
	page.eval(t, fmt.Sprintf(`(async () => {
		const size = %d;
		const unit = 'stompbox 1 MiB body 0123456789abcdefghijklmnopqrstuvwxyz\n';
		const body = unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
		const out = [];
		for (const split of [false, true]) {
			const dest = '/queue/' + e2e.unique('e2e.large');
			const c = await e2e.connect({ splitLargeFrames: split });
			const got = [];
			let equal = false;
			await e2e.subscribe(c, dest, (m) => {
				got.push(m.body.length);
				equal = m.body === body;
			});
			const start = performance.now();
			await e2e.publish(c, { destination: dest, body });
			await e2e.waitFor('the 1 MiB message', () => got.length > 0, 15000);
			const ms = Math.round(performance.now() - start);
			await e2e.close(c);
			out.push({ split, got, equal, ev: c.ev, ms });
		}
		return out;
	})()`, size), &res)

	if len(res) != 2 {
		t.Fatalf("got %d results, want 2", len(res))
	}
	for _, r := range res {
		what := "one WebSocket message"
		if r.Split {
			what = "split into 8 KiB WebSocket messages"
		}
		if !slices.Equal(r.Got, []int{size}) || !r.Equal {
			t.Errorf("%s: received lengths %v, equal %v; want one message equal to the %d bytes sent", what, r.Got, r.Equal, size)
		}
		var kinds []string
		for _, m := range r.Ev.WS {
			if m.Command == "MESSAGE" {
				kinds = append(kinds, m.Kind)
				if m.Size < size {
					t.Errorf("%s: MESSAGE in a WebSocket message of %d characters, want the whole frame in one", what, m.Size)
				}
			}
		}
		if !slices.Equal(kinds, []string{"text"}) {
			t.Errorf("%s: MESSAGE arrived in WebSocket messages of type %v, want [text]", what, kinds)
		}
		checkDisconnected(t, what, r.Ev)
		t.Logf("%s: round trip %d ms", what, r.Millis)
	}
}

// testHeaderEscaping: STOMP 1.2 header values with ':', '\n', '\\' (and
// '\r', and non-ASCII) survive stomp.js's escaping, the broker's decoding
// and re-encoding, and stomp.js's unescaping.
func testHeaderEscaping(t *testing.T, page *tab) {
	var res struct {
		Got map[string]string `json:"got"`
	}
	page.eval(t, `(async () => {
		const dest = '/queue/' + e2e.unique('e2e.escape');
		const c = await e2e.connect();
		const got = [];
		await e2e.subscribe(c, dest, (m) => got.push(m.headers));
		await e2e.publish(c, {
			destination: dest,
			body: 'escaped headers',
			headers: {
				'x-escaped': 'colon:back\\slash\nsecond line',
				'x-all': ':\n\\::\\\\\n\n',
				'x-cr': 'carriage\rreturn',
				'x-utf8': 'h\u00e9llo w\u00f6rld \u2713',
			},
		});
		await e2e.waitFor('the message', () => got.length > 0);
		await e2e.close(c);
		return { got: got[0] };
	})()`, &res)

	for k, want := range map[string]string{
		"x-escaped": "colon:back\\slash\nsecond line",
		"x-all":     ":\n\\::\\\\\n\n",
		"x-cr":      "carriage\rreturn",
		"x-utf8":    "h\u00e9llo w\u00f6rld \u2713",
	} {
		if got, ok := res.Got[k]; !ok || got != want {
			t.Errorf("header %s came back as %q (present %v), want %q", k, got, ok, want)
		}
	}
}
