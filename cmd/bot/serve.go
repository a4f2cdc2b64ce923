package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/openai"
	"github.com/rolegate/rolegate/internal/pgstore"
	"github.com/rolegate/rolegate/internal/slackapp"
)

// shutdownTimeout bounds the graceful shutdown of the HTTP server.
const shutdownTimeout = 10 * time.Second

// serve runs rolegate until ctx is cancelled: it wires the parts, starts
// its long-lived actors, and stops them.
func serve(ctx context.Context, cfg *Config, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	p, err := wire(ctx, cfg, log)
	if err != nil {
		return err // wire logged what to fix
	}
	defer p.close()
	return p.run(ctx)
}

// process is a wired rolegate: the store, the Slack side, the worker and the
// HTTP listener, ready to run.
type process struct {
	cfg     *Config
	log     *slog.Logger
	store   servedStore
	where   string // the store, for the log: never the URL
	catalog *openai.CachedCatalog
	app     *slackapp.App
	worker  *approvals.Worker
	runner  *slackapp.SocketRunner // nil in HTTP mode
	drift   *driftWatch            // nil when ROLEGATE_DRIFT_INTERVAL is 0
	srv     *http.Server
	ln      net.Listener
	ready   atomic.Bool // from start until shutdown begins
}

// wire builds every part from cfg. It logs what to fix and returns an
// exitError when a part cannot be built.
func wire(ctx context.Context, cfg *Config, log *slog.Logger) (*process, error) {
	policy, err := cfg.policy()
	if err != nil {
		log.Error("Cannot use the policy", "err", err)
		return nil, exitError{err.Error()}
	}
	store, where, err := openStore(ctx, cfg, log)
	if err != nil {
		log.Error("Cannot open the database", "err", err)
		return nil, exitError{err.Error()}
	}
	p := &process{cfg: cfg, log: log, store: store, where: where}
	reg := prometheus.NewRegistry()
	metrics := newMetrics(reg, store, log, cfg.DryRun)
	api := slackClient(cfg)
	client := openai.New(openai.Config{BaseURL: cfg.OpenAIBaseURL, AdminKey: cfg.OpenAIAdminKey, Timeout: cfg.OpenAITimeout, DryRun: cfg.DryRun})
	p.catalog = openai.NewCachedCatalog(client, openai.CacheConfig{})
	svc := &approvals.Service{
		Store:     store,
		Policy:    policy,
		IsGroup:   slackapp.IsUserGroup,
		Directory: slackapp.Directory{Client: api},
		MaxOpen:   cfg.MaxOpenPerRequester,
		Now:       time.Now,
	}
	responseURLs := slackapp.ResponseURLs{APIURL: cfg.SlackAPIURL}
	p.app = &slackapp.App{Service: svc, Catalog: p.catalog, Slack: api, Logger: log, Metrics: metrics, ResponseURLs: responseURLs, DryRun: cfg.DryRun,
		// The bot token is set in both transports and the same on every
		// replica, so a request modal opened before a restart (or on
		// another replica) still verifies when submitted.
		ModalKey: slackapp.DeriveModalKey(cfg.SlackBotToken)}
	p.worker = &approvals.Worker{
		Store:   store,
		Checker: &approvals.Checker{Catalog: p.catalog, Fresh: client, Policy: policy, MemberOf: svc.MemberOf},
		Granter: client,
		Revoker: client,
		Roles:   client,
		Notifier: &slackapp.Notifier{Client: api, Metrics: metrics, ResponseURLs: responseURLs, DryRun: cfg.DryRun, AuditHead: auditHead(store),
			Directory: slackapp.Directory{Client: api}, Logger: log},
		Logger:      log,
		Observer:    metrics,
		MaxAttempts: cfg.OpenAIMaxAttempts,
		Deadline:    cfg.OpenAIDeadline,
		CallTimeout: 4 * cfg.OpenAITimeout, // list, group, POST and a re-check
	}
	if cfg.SocketMode() {
		p.runner = &slackapp.SocketRunner{App: p.app, Client: socketmode.New(api)}
		// Replicas each hold a connection, and Slack may hand an envelope
		// to any of them: the engine shared by replicas (PostgreSQL) tells
		// them apart; bbolt serves one process, whose memory is enough.
		if shared, ok := store.(approvals.Rememberer); ok {
			p.runner.Dedupe = shared
		}
	}
	if cfg.DriftInterval > 0 {
		p.drift = &driftWatch{Store: store, Roles: client, Gauges: metrics, Logger: log, Interval: cfg.DriftInterval, Now: time.Now}
		p.drift.Turns, _ = store.(approvals.Turner) // PostgreSQL: one replica checks each time
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", p.healthz)
	mux.HandleFunc("GET /readyz", p.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if !cfg.SocketMode() {
		mux.Handle("/slack/", crashHook(p.app.Handler(cfg.SlackSigningSecret, time.Now)))
	}
	p.ln, err = net.Listen("tcp", cfg.Addr)
	if err != nil {
		p.close()
		log.Error("Cannot listen on ROLEGATE_ADDR: is another process using it? Set ROLEGATE_ADDR to a free host:port", "addr", cfg.Addr, "err", err)
		return nil, exitError{fmt.Sprintf("cannot listen on ROLEGATE_ADDR %s: %v", cfg.Addr, err)}
	}
	p.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return p, nil
}

func (p *process) close() {
	if p.catalog != nil {
		p.catalog.Close()
	}
	p.store.Close()
}

// actor is a long-lived part: it runs until its context ends, and an error
// it returns stops the whole process.
type actor struct {
	name string
	run  func(context.Context) error
}

// actors are the process's long-lived parts, each with one start (run) and
// one interrupt (the context; the HTTP server's Shutdown).
func (p *process) actors() []actor {
	as := []actor{
		{"http server", func(context.Context) error {
			if err := p.srv.Serve(p.ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}},
		{"worker", p.worker.Run},
	}
	if p.runner != nil {
		as = append(as, actor{"socket mode", p.runner.Run})
	}
	if p.drift != nil {
		as = append(as, actor{"drift check", func(ctx context.Context) error { p.drift.Run(ctx); return nil }})
	}
	return as
}

// run starts the actors, waits for ctx to end or an actor to fail, then
// stops them all within shutdownTimeout.
func (p *process) run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, a := range p.actors() {
		wg.Go(func() {
			if err := a.run(ctx); err != nil {
				cancel(fmt.Errorf("%s: %w", a.name, err))
			}
		})
	}
	p.ready.Store(true)
	p.logStarted()

	<-ctx.Done()
	p.ready.Store(false)
	p.log.Info("rolegate stopping")
	sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer scancel()
	if err := p.srv.Shutdown(sctx); err != nil {
		p.log.Warn("HTTP server did not stop in time", "err", err)
	}
	wg.Wait()
	p.app.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		p.log.Error("rolegate stopped on an error", "err", cause)
		return exitError{cause.Error()}
	}
	p.log.Info("rolegate stopped")
	return nil
}

func (p *process) logStarted() {
	cfg := p.cfg
	mode := "http"
	if p.runner != nil {
		mode = "socket"
	}
	p.log.Info("rolegate started", "mode", mode, "addr", p.ln.Addr().String(), "db", p.where,
		"approvers", len(cfg.approvers), "approvals_required", cfg.ApprovalsRequired, "request_ttl", cfg.RequestTTL.String(),
		"policy", cfg.Policy, "dry_run", cfg.DryRun)
	if cfg.DryRun {
		p.log.Warn("Dry run (ROLEGATE_DRY_RUN=true): rolegate will never POST or DELETE at OpenAI; every message says what would have been done")
	}
}

func (p *process) healthz(w http.ResponseWriter, r *http.Request) {
	if err := p.store.Ping(r.Context()); err != nil {
		http.Error(w, "database unavailable", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// readyz answers 200 once the process can receive from Slack, and says why
// or why not in its body.
func (p *process) readyz(w http.ResponseWriter, r *http.Request) {
	switch {
	case p.store.Ping(r.Context()) != nil:
		http.Error(w, "not ready: database unavailable", http.StatusServiceUnavailable)
	case !p.ready.Load():
		http.Error(w, "not ready: starting or stopping", http.StatusServiceUnavailable)
	case p.runner == nil:
		fmt.Fprintln(w, "ready: http mode, receiving from Slack on /slack/commands and /slack/interactions")
	default:
		if st := p.runner.Status(); !st.Ready() {
			http.Error(w, "not ready: "+st.String(), http.StatusServiceUnavailable)
		} else {
			fmt.Fprintln(w, "ready: "+st.String())
		}
	}
}

// servedStore is the store a process runs on: either engine.
type servedStore interface {
	approvals.Store
	Close() error
}

// openStore opens PostgreSQL when ROLEGATE_DATABASE_URL is set (several
// replicas may share it), else the bbolt file ROLEGATE_DB (one process).
// where names it for the log, never with the URL (it holds a password).
func openStore(ctx context.Context, cfg *Config, log *slog.Logger) (s servedStore, where string, err error) {
	if cfg.DatabaseURL != "" {
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		pg, err := pgstore.Open(octx, cfg.DatabaseURL, pgstore.Options{Logger: log})
		if err != nil {
			return nil, "", err
		}
		return pg, "postgresql (ROLEGATE_DATABASE_URL)", nil
	}
	b, err := approvals.Open(cfg.DB)
	if err != nil {
		return nil, "", err
	}
	return b, cfg.DB, nil
}

func slackClient(cfg *Config) *slack.Client { return slackClientVia(cfg, nil) }

// slackClientVia is slackClient whose HTTP round trips go through wrap (nil:
// straight), for a caller that wants to see the answers' headers.
func slackClientVia(cfg *Config, wrap func(http.RoundTripper) http.RoundTripper) *slack.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// The worker delivers several messages at once, and clicks send notices:
	// keep those connections instead of reopening them past 2 per host.
	transport.MaxIdleConnsPerHost = 16
	var rt http.RoundTripper = transport
	if wrap != nil {
		rt = wrap(transport)
	}
	opts := []slack.Option{
		slack.OptionAPIURL(cfg.SlackAPIURL),
		slack.OptionHTTPClient(&http.Client{Timeout: 15 * time.Second, Transport: rt}),
	}
	if cfg.SocketMode() {
		opts = append(opts, slack.OptionAppLevelToken(cfg.SlackAppToken))
	}
	return slack.New(cfg.SlackBotToken, opts...)
}

// newLogger builds the slog logger. Every string it writes passes through a
// scrubber that blanks the configured secrets, as a last line of defence.
func newLogger(cfg *Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	secrets := cfg.secrets()
	scrub := strings.NewReplacer(replacerPairs(secrets)...)
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		switch a.Value.Kind() {
		case slog.KindString:
			a.Value = slog.StringValue(scrub.Replace(a.Value.String()))
		case slog.KindAny:
			if err, ok := a.Value.Any().(error); ok {
				a.Value = slog.StringValue(scrub.Replace(err.Error()))
			}
		}
		return a
	}}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func replacerPairs(secrets []string) []string {
	var pairs []string
	for _, s := range secrets {
		if len(s) >= 8 {
			pairs = append(pairs, s, "[redacted]")
		}
	}
	return pairs
}
