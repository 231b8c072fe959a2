package control

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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
// serves it.
func Dial(path string) (*Client, error) {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, err
	}
	c.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{path: path, http: &http.Client{Transport: tr}}, nil
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://scribefs"+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil && size >= 0 {
		req.ContentLength = size
	}
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

func (c *Client) Get(ctx context.Context, id segment.ID, w io.Writer) error {
	resp, err := c.do(ctx, "GET", "/v1/segments/"+id.String(), nil, -1)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("segment %d: read %d of %d bytes from the mount process", id, n, resp.ContentLength)
	}
	if err != nil {
		return fmt.Errorf("get segment %d through the mount process: %w", id, err)
	}
	return nil
}

func (c *Client) Put(ctx context.Context, id segment.ID, r io.Reader, size int64, mtime time.Time) (segment.Info, error) {
	path := "/v1/segments/" + id.String()
	if !mtime.IsZero() {
		path += "?mtime_ns=" + strconv.FormatInt(mtime.UnixNano(), 10)
	}
	return c.info(ctx, "PUT", path, r, size)
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
