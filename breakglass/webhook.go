package breakglass

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/ztp-dev/ztp/audit"
)

// Defaults for WebhookOptions.
const (
	DefaultWebhookAttempts  = 6
	DefaultWebhookBackoff   = time.Second
	DefaultWebhookQueueSize = 256
	maxWebhookBackoff       = time.Minute
	webhookAttemptTimeout   = 10 * time.Second
)

// WebhookOptions configure a Webhook.
type WebhookOptions struct {
	URL   string  // breakglass.notify_webhook (http or https)
	Audit Auditor // required: failed deliveries are recorded here
	// Client sends the POSTs (default: an http.Client with a 10s timeout).
	Client *http.Client
	// Attempts per event, the first included (default DefaultWebhookAttempts).
	Attempts int
	// Backoff is the wait before the first retry; it doubles up to a minute
	// (default DefaultWebhookBackoff).
	Backoff time.Duration
	// QueueSize bounds the events waiting for delivery (default
	// DefaultWebhookQueueSize); past it, events are dropped and audited.
	QueueSize int
	Now       func() time.Time
	Logger    *slog.Logger
}

// Webhook POSTs every event as JSON to a URL from a background goroutine.
// Notify never blocks; deliveries are retried with exponential backoff, and
// an event that could not be delivered is an audit record of type
// "breakglass" naming its grant.
type Webhook struct {
	opts WebhookOptions
	log  *slog.Logger

	mu     sync.Mutex // guards closed and sends on queue
	closed bool
	queue  chan Event

	ctx    context.Context // ends when Stop gives up waiting
	cancel context.CancelFunc
	done   chan struct{}  // closed when the worker has drained the queue
	drops  sync.WaitGroup // audit records of dropped events still being written
}

// NewWebhook validates o and starts the delivery worker; Stop ends it.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: webhook URL must be http(s)", ErrInvalidOptions)
	}
	if o.Audit == nil {
		return nil, fmt.Errorf("%w: webhook needs an Auditor", ErrInvalidOptions)
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: webhookAttemptTimeout}
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultWebhookAttempts
	}
	if o.Backoff <= 0 {
		o.Backoff = DefaultWebhookBackoff
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultWebhookQueueSize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	w := &Webhook{opts: o, log: o.Logger, queue: make(chan Event, o.QueueSize), done: make(chan struct{})}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	go w.run()
	return w, nil
}

// Notify queues e for delivery without blocking. When the queue is full (the
// receiver has been down for a while) e is dropped, and the drop is audited.
func (w *Webhook) Notify(e Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		w.log.Warn("break-glass notification after stop; not sent", "grant", e.Grant.ID, "event", e.Event)
		return
	}
	select {
	case w.queue <- e:
	default:
		w.drops.Go(func() { w.recordFailure(e, 0, errors.New("notification queue full")) })
	}
}

// Stop stops accepting events and delivers those queued until ctx ends; then
// it abandons the rest, auditing each as not delivered. It returns when the
// worker has finished, and is safe to call more than once.
func (w *Webhook) Stop(ctx context.Context) {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
	case <-ctx.Done():
		w.cancel()
		<-w.done // without the network, the rest is only audit appends
	}
	w.cancel()
	w.drops.Wait()
}

func (w *Webhook) run() {
	defer close(w.done)
	for e := range w.queue {
		attempts, err := w.deliver(e)
		if err != nil {
			w.recordFailure(e, attempts, err)
		}
	}
}

// deliver POSTs e until it is accepted, the attempts run out, the receiver
// refuses it for good (a 4xx other than 408 and 429), or Stop gives up.
func (w *Webhook) deliver(e Event) (int, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	wait := w.opts.Backoff
	var last error
	for attempt := 1; attempt <= w.opts.Attempts; attempt++ {
		if attempt > 1 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-w.ctx.Done():
				t.Stop()
				return attempt - 1, fmt.Errorf("proxy stopping; last error: %w", last)
			}
			wait = min(2*wait, maxWebhookBackoff)
		}
		retry, err := w.post(e, body)
		if err == nil {
			return attempt, nil
		}
		last = err
		w.log.Warn("break-glass notification failed", "grant", e.Grant.ID, "event", e.Event, "attempt", attempt, "err", err)
		if !retry {
			return attempt, err
		}
	}
	return w.opts.Attempts, last
}

func (w *Webhook) post(e Event, body []byte) (retry bool, err error) {
	if err := w.ctx.Err(); err != nil {
		return false, errors.New("proxy stopping")
	}
	req, err := http.NewRequestWithContext(w.ctx, http.MethodPost, w.opts.URL, bytes.NewReader(body))
	if err != nil {
		return false, errors.New("cannot build request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ztp-proxy")
	req.Header.Set("X-Ztp-Event", e.Event)
	// The same value on every retry of one event, so receivers can de-duplicate.
	req.Header.Set("X-Ztp-Delivery", e.Grant.ID+"/"+strconv.FormatUint(e.AuditSeq, 10))
	resp, err := w.opts.Client.Do(req)
	if err != nil {
		// url.Error repeats the URL, which may hold a secret (many chat
		// webhooks do): keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return true, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, nil
	case c == http.StatusRequestTimeout, c == http.StatusTooManyRequests, c >= 500:
		return true, fmt.Errorf("HTTP %d", c)
	default:
		return false, fmt.Errorf("HTTP %d (not retried)", c)
	}
}

// recordFailure audits an event that was not delivered. The URL is left out:
// it may carry a secret.
func (w *Webhook) recordFailure(e Event, attempts int, cause error) {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultAuditTimeout)
	defer cancel()
	rec := &audit.Record{
		Time:            w.opts.Now().UTC(),
		Type:            audit.TypeBreakglass,
		BreakglassGrant: e.Grant.ID,
		Detail:          fmt.Sprintf("notification failed: %q event (audit seq %d) not delivered to breakglass.notify_webhook after %d attempt(s): %v", e.Event, e.AuditSeq, attempts, cause),
	}
	if _, err := w.opts.Audit.Append(ctx, rec); err != nil {
		w.log.Error("cannot record a failed break-glass notification", "grant", e.Grant.ID, "event", e.Event, "err", err)
	}
}
