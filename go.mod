module github.com/stompbox/stompbox

go 1.26.8

require github.com/go-stomp/stomp/v3 v3.1.3

require go.uber.org/goleak v1.3.0

require (
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/gobwas/pool v0.2.1 // indirect
	github.com/gobwas/ws v1.4.0 // indirect
)
