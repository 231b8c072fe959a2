package control

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/scribefs/scribefs/segment"
)

// Client is the API of a store served by a running mount.
type Client struct {
	path string
	http *http.Client
}

var _ API = (*Client)(nil)

// Dial connects to the socket at path; it fails at once when no process
// serves it, or when the process serving it is neither this user nor root
// (another user could have planted a socket where the hot-tier directory
// is writable by others: it must never receive a put or serve a get).
func Dial(path string) (*Client, error) {
	c, err := dialChecked(context.Background(), path, time.Second)
	if err != nil {
		return nil, err
	}
	c.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialChecked(ctx, path, 0)
	}}
	return &Client{path: path, http: &http.Client{Transport: tr}}, nil
}

// dialChecked connects to path and checks the peer's uid.
func dialChecked(ctx context.Context, path string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	uid, err := peerUID(c)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: cannot tell who serves it: %w", path, err)
	}
	if me := uint32(os.Getuid()); uid != me && uid != 0 {
		c.Close()
		return nil, fmt.Errorf("control socket %s is served by uid %d, not by this user (uid %d) or root: refusing it", path, uid, me)
	}
	return c, nil
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://scribefs"+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil && size >= 0 {
		req.ContentLength = size
	}
	return c.send(req)
}

func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", c.path, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		var we wireError
		if err := json.NewDecoder(resp.Body).Decode(&we); err != nil {
			return nil, fmt.Errorf("control socket %s: %s", c.path, resp.Status)
		}
		return nil, decodeError(we)
	}
	return resp, nil
}

func (c *Client) info(ctx context.Context, method, path string, body io.Reader, size int64) (segment.Info, error) {
	resp, err := c.do(ctx, method, path, body, size)
	if err != nil {
		return segment.Info{}, err
	}
	return decodeInfo(resp)
}

func decodeInfo(resp *http.Response) (segment.Info, error) {
	defer resp.Body.Close()
	var w wireInfo
	if err := json.NewDecoder(resp.Body).Decode(&w); err != nil {
		return segment.Info{}, fmt.Errorf("control socket: bad reply: %w", err)
	}
	return w.info(), nil
}

func (c *Client) done(ctx context.Context, method, path string) error {
	resp, err := c.do(ctx, method, path, nil, -1)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func (c *Client) Stat(ctx context.Context, id segment.ID) (segment.Info, error) {
	return c.info(ctx, "GET", "/v1/segments/"+id.String()+"/stat", nil, -1)
}

func (c *Client) List(ctx context.Context, fn func(segment.Info) error) error {
	resp, err := c.do(ctx, "GET", "/v1/segments", nil, -1)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var line struct {
			wireInfo
			Error *wireError `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("control socket: bad listing line: %w", err)
		}
		if line.Error != nil {
			return decodeError(*line.Error)
		}
		if err := fn(line.wireInfo.info()); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Open asks the mount process for the segment's current version; the
// Object checks the length and CRC32C of what arrives (see integrity.go).
func (c *Client) Open(ctx context.Context, id segment.ID) (Object, error) {
	resp, err := c.do(ctx, "GET", "/v1/segments/"+id.String(), nil, -1)
	if err != nil {
		return nil, err
	}
	obj, err := newClientObject(id, resp)
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	return obj, nil
}

// Put sends r as a chunked body that ends with the CRC32C of every byte in
// a trailer, and names its length when size >= 0: the mount process
// publishes it only when both match, so a put cut short (the client killed,
// the source failing) publishes nothing.
func (c *Client) Put(ctx context.Context, id segment.ID, r io.Reader, size int64, mtime time.Time) (segment.Info, error) {
	path := "/v1/segments/" + id.String()
	if !mtime.IsZero() {
		path += "?mtime_ns=" + strconv.FormatInt(mtime.UnixNano(), 10)
	}
	body := &sendBody{r: r, crc: newCRC(), trailer: http.Header{}}
	req, err := http.NewRequestWithContext(ctx, "PUT", "http://scribefs"+path, body)
	if err != nil {
		return segment.Info{}, err
	}
	req.ContentLength = -1 // chunked, so the trailer can follow
	req.Trailer = body.trailer
	req.Trailer[trailerCRC] = nil
	if size >= 0 {
		req.Header.Set(headerSize, strconv.FormatInt(size, 10))
	}
	resp, err := c.send(req)
	if err != nil {
		return segment.Info{}, err
	}
	return decodeInfo(resp)
}

func (c *Client) Delete(ctx context.Context, id segment.ID) error {
	return c.done(ctx, "DELETE", "/v1/segments/"+id.String())
}

func (c *Client) Archive(ctx context.Context, id segment.ID) error {
	return c.done(ctx, "POST", "/v1/segments/"+id.String()+"/archive")
}

func (c *Client) HotSegments(ctx context.Context) ([]segment.Info, error) {
	resp, err := c.do(ctx, "GET", "/v1/hot", nil, -1)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var ws []wireInfo
	if err := json.NewDecoder(resp.Body).Decode(&ws); err != nil {
		return nil, err
	}
	out := make([]segment.Info, len(ws))
	for i, w := range ws {
		out[i] = w.info()
	}
	return out, nil
}

func (c *Client) Health(ctx context.Context) error { return c.done(ctx, "GET", "/v1/health") }

func (c *Client) Status(ctx context.Context) (Status, error) {
	resp, err := c.do(ctx, "GET", "/v1/status", nil, -1)
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	var st Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

func (c *Client) Close() error {
	c.http.CloseIdleConnections()
	return nil
}

func (c *Client) Verify(ctx context.Context, opts VerifyOptions, progress VerifyProgress) (VerifyReport, error) {
	path := "/v1/verify?parallel=" + strconv.Itoa(opts.Parallel)
	if opts.Repair {
		path += "&repair=1"
	}
	resp, err := c.do(ctx, "POST", path, nil, -1)
	if err != nil {
		return VerifyReport{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var l verifyLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return VerifyReport{}, fmt.Errorf("control socket: bad verify line: %w", err)
		}
		switch {
		case l.Error != nil:
			return VerifyReport{}, decodeError(*l.Error)
		case l.Report != nil:
			return *l.Report, nil
		case l.Done != nil && progress != nil:
			progress(*l.Done, l.Total, l.Bytes)
		}
	}
	if err := sc.Err(); err != nil {
		return VerifyReport{}, fmt.Errorf("control socket %s: verify: %w", c.path, err)
	}
	return VerifyReport{}, fmt.Errorf("control socket %s: verify: the mount process ended the reply early", c.path)
}
