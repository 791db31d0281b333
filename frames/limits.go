package frames

// Limits bound every peer-controlled size in a frame, so that a parser holds
// at most about MaxCommandLine + MaxHeaderBytes + MaxBody bytes of any frame.
// A zero field takes its default.
type Limits struct {
	// MaxCommandLine is the longest command line, without EOL. Default 64.
	MaxCommandLine int
	// MaxHeaderLine is the longest single "key:value" line, without EOL,
	// before unescaping. Default 8 KiB.
	MaxHeaderLine int
	// MaxHeaders is the most header lines one frame may carry. Default 128.
	MaxHeaders int
	// MaxHeaderBytes bounds the sum of all header line lengths of one frame.
	// Default 64 KiB.
	MaxHeaderBytes int
	// MaxBody is the largest body. A content-length above it fails before
	// any byte of the body is buffered. Default 4 MiB.
	MaxBody int
}

// The defaults of Limits.
const (
	DefaultMaxCommandLine = 64
	DefaultMaxHeaderLine  = 8 << 10
	DefaultMaxHeaders     = 128
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxBody        = 4 << 20
)

// WithDefaults returns l with every zero or negative field set to its default.
func (l Limits) WithDefaults() Limits {
	orDefault := func(v, def int) int {
		if v <= 0 {
			return def
		}
		return v
	}
	return Limits{
		MaxCommandLine: orDefault(l.MaxCommandLine, DefaultMaxCommandLine),
		MaxHeaderLine:  orDefault(l.MaxHeaderLine, DefaultMaxHeaderLine),
		MaxHeaders:     orDefault(l.MaxHeaders, DefaultMaxHeaders),
		MaxHeaderBytes: orDefault(l.MaxHeaderBytes, DefaultMaxHeaderBytes),
		MaxBody:        orDefault(l.MaxBody, DefaultMaxBody),
	}
}
