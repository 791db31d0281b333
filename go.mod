module github.com/stompbox/stompbox

go 1.26.8

require github.com/go-stomp/stomp/v3 v3.1.3

require go.uber.org/goleak v1.3.0
