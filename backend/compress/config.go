package compress

import "fmt"

// Mode says how Put stores new segments. Reading never depends on it.
type Mode uint8

const (
	None Mode = iota // plain bytes
	Zstd             // zstd frames, Compression "zstd-blocks"
	Gzip             // gzip members, Compression "gzip-blocks"
)

// Compression values this wrapper reports in segment.Info.
const (
	CompressionZstd = "zstd-blocks"
	CompressionGzip = "gzip-blocks"
)

// ParseMode maps the configuration value ("none", "gzip", "zstd") to a Mode.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "none":
		return None, nil
	case "zstd":
		return Zstd, nil
	case "gzip":
		return Gzip, nil
	}
	return None, fmt.Errorf("compression %q: want none, gzip or zstd", s)
}

func (m Mode) String() string {
	switch m {
	case Zstd:
		return "zstd"
	case Gzip:
		return "gzip"
	}
	return "none"
}

// Config tunes the wrapper. The zero value stores plain bytes.
type Config struct {
	Mode Mode
	// InFlight is how many blocks a Put compresses at once; it bounds a
	// Put's memory to about twice this many MiB. Default 4.
	InFlight int
	// IndexCache is how many parsed indexes (one per segment version) are
	// kept. Default 1024.
	IndexCache int
}

func (c Config) withDefaults() Config {
	if c.InFlight <= 0 {
		c.InFlight = 4
	}
	if c.IndexCache <= 0 {
		c.IndexCache = 1024
	}
	return c
}
