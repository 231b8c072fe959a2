package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/scribefs/scribefs/backend"
	"github.com/scribefs/scribefs/segment"
)

// kind is the class of a failure, decided once by classify.
type kind int

const (
	kindOther        kind = iota // no sentinel fits
	kindNotFound                 // the object does not exist
	kindNoBucket                 // the bucket does not exist: configuration, not a missing segment
	kindStale                    // a precondition (If-Match) failed
	kindCredentials              // the store rejected the credentials themselves
	kindDenied                   // valid credentials, access refused
	kindArchived                 // the object is in an archive storage class
	kindUnavailable              // transient: 5xx, throttling, resets, idle timeouts
	kindUnreachable              // transient, and no connection could be made at all
	kindInvalid                  // the request is wrong; retrying cannot help
	kindInvalidRange             // 416: the range starts at or past the end
	kindTooLarge                 // the object exceeds the store's size limit
	kindCorrupted                // the bytes were damaged on the way (checksum rejected)
	kindCanceled                 // the caller's context ended
	kindNoSuchUpload             // a multipart upload is gone (aborted elsewhere)
)

// edgeError is what every exported method returns for a store failure: one
// line naming the operation and the segment, wrapping the sentinels callers
// test with errors.Is. It deliberately does not wrap the SDK error, so no SDK
// type leaks past this package.
type edgeError struct {
	msg   string
	kinds []error
}

func (e *edgeError) Error() string   { return e.msg }
func (e *edgeError) Unwrap() []error { return e.kinds }

// failure is one classified SDK error.
type failure struct {
	kind   kind
	detail string // one line, secret-free
	ctxErr error  // for kindCanceled: context.Canceled or DeadlineExceeded
}

// classify decides what an SDK or transport error means. It is the only
// place that looks inside SDK errors.
func (b *Backend) classify(err error) failure {
	if errors.Is(err, errIdle) {
		var ie *idleError
		errors.As(err, &ie)
		return failure{kind: kindUnavailable, detail: ie.Error()}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		f := failure{kind: kindCanceled, ctxErr: context.Canceled, detail: context.Canceled.Error()}
		if errors.Is(err, context.DeadlineExceeded) {
			f.ctxErr, f.detail = context.DeadlineExceeded, context.DeadlineExceeded.Error()
		}
		return f
	}

	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		status := 0
		var re *smithyhttp.ResponseError
		if errors.As(err, &re) {
			status = re.HTTPStatusCode()
		}
		code := apiErr.ErrorCode()
		detail := code
		if status != 0 {
			detail = fmt.Sprintf("%s (HTTP %d)", code, status)
		}
		if msg := apiErr.ErrorMessage(); msg != "" && msg != code {
			detail += ": " + msg
		}
		return failure{kind: classifyAPI(code, status), detail: b.scrub(detail)}
	}

	// Below here the request never got an S3 answer.
	f := failure{kind: kindOther, detail: b.scrub(innermost(err))}
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr):
		f.kind = kindInvalid
		f.detail = "TLS certificate not accepted: " + f.detail
	case errors.As(err, &dnsErr):
		f.kind = kindUnreachable
	case errors.As(err, &opErr) && opErr.Op == "dial":
		f.kind = kindUnreachable
		if errors.Is(err, syscall.ECONNREFUSED) {
			f.detail = "connection refused"
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		f.kind, f.detail = kindUnreachable, "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		f.kind = kindUnavailable
	default:
		var netErr net.Error
		var sendErr *smithyhttp.RequestSendError
		var deserErr *smithy.DeserializationError
		if errors.As(err, &netErr) || errors.As(err, &sendErr) || errors.As(err, &deserErr) {
			f.kind = kindUnavailable
		}
	}
	return f
}

// classifyAPI maps an S3 error code, or failing that the HTTP status (a
// HEAD reply has no body, so no code), to a kind.
func classifyAPI(code string, status int) kind {
	switch code {
	case "NoSuchKey", "NotFound":
		return kindNotFound
	case "NoSuchBucket":
		return kindNoBucket
	case "PreconditionFailed":
		return kindStale
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
		"TokenRefreshRequired", "InvalidSecurity", "AuthorizationHeaderMalformed":
		return kindCredentials
	case "AccessDenied", "AllAccessDisabled", "AccountProblem":
		return kindDenied
	case "InvalidObjectState":
		return kindArchived
	case "InvalidRange":
		return kindInvalidRange
	case "InvalidArgument", "InvalidRequest", "InvalidBucketName", "MalformedXML", "KeyTooLongError",
		"MetadataTooLarge", "InvalidPart", "InvalidPartOrder", "EntityTooSmall", "InvalidDigest", "NotImplemented":
		return kindInvalid
	case "EntityTooLarge":
		return kindTooLarge
	case "BadDigest", "XAmzContentChecksumMismatch", "XAmzContentSHA256Mismatch", "IncompleteBody":
		return kindCorrupted
	case "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
		"RequestTimeout", "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable",
		"XMinioServerNotInitialized":
		return kindUnavailable
	case "NoSuchUpload":
		return kindNoSuchUpload
	}
	switch {
	case status == 404:
		return kindNotFound
	case status == 412:
		return kindStale
	case status == 416:
		return kindInvalidRange
	case status == 403:
		return kindDenied
	case status == 408, status == 429, status >= 500:
		return kindUnavailable
	case status >= 400:
		return kindInvalid
	}
	return kindOther
}

// innermost renders the most specific part of a transport error on one
// line, without the SDK's "operation error S3: X," framing.
func innermost(err error) string {
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return opErr.Error()
	}
	var urlErr *url.Error // drops the method and URL framing
	if errors.As(err, &urlErr) && urlErr.Err != nil {
		return urlErr.Err.Error()
	}
	var smErr *smithy.OperationError
	if errors.As(err, &smErr) && smErr.Err != nil {
		err = smErr.Err
	}
	return err.Error()
}

// scrub makes s one line and removes the secret key, in case some layer
// ever echoes it.
func (b *Backend) scrub(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if b.cfg.SecretAccessKey != "" {
		s = strings.ReplaceAll(s, b.cfg.SecretAccessKey, "REDACTED")
	}
	return s
}

// fail converts err, from the operation op ("get segment 42", "list"), into
// the error the backend returns. Every SDK error goes through here once.
func (b *Backend) fail(op string, err error) error {
	return b.failure(op, b.classify(err))
}

func (b *Backend) failure(op string, f failure) error {
	prefix := "s3 " + op + ": "
	e := func(msg string, kinds ...error) error {
		return &edgeError{msg: prefix + msg, kinds: kinds}
	}
	switch f.kind {
	case kindNotFound:
		return e("not found: "+f.detail, backend.ErrNotFound)
	case kindNoBucket:
		return e(fmt.Sprintf("invalid: bucket %s does not exist", b.cfg.Bucket), backend.ErrInvalid)
	case kindStale:
		return e("version changed: "+f.detail, backend.ErrStale)
	case kindCredentials:
		return e(fmt.Sprintf("permission denied: credentials rejected by %s: %s", b.endpointName(), f.detail), backend.ErrPermission)
	case kindDenied:
		return e("permission denied: "+f.detail, backend.ErrPermission)
	case kindArchived:
		return e("permission denied: the object is archived (restore it before reading): "+f.detail, backend.ErrPermission)
	case kindUnavailable:
		return e("unavailable: "+f.detail, backend.ErrUnavailable)
	case kindUnreachable:
		return e(fmt.Sprintf("unavailable: cannot reach %s: %s", b.endpointName(), f.detail), backend.ErrUnavailable)
	case kindInvalid, kindInvalidRange:
		return e("invalid: "+f.detail, backend.ErrInvalid)
	case kindTooLarge:
		return e("segment too large: "+f.detail, backend.ErrTooLarge)
	case kindCorrupted:
		return e("checksum mismatch in transit: "+f.detail, segment.ErrChecksum, backend.ErrUnavailable)
	case kindCanceled:
		return e(f.detail, f.ctxErr)
	case kindNoSuchUpload:
		// Mid-Put this means someone aborted our multipart upload (a crash
		// cleanup elsewhere); the Put as a whole can be retried.
		return e("unavailable: multipart upload aborted by someone else: "+f.detail, backend.ErrUnavailable)
	}
	return e(f.detail)
}

// segOp names an operation on one segment in messages.
func segOp(op string, id segment.ID) string { return op + " segment " + id.String() }
