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

// serve runs rolegate until ctx is cancelled.
func serve(ctx context.Context, cfg *Config, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	store, where, err := openStore(ctx, cfg, log)
	if err != nil {
		log.Error("Cannot open the database", "err", err)
		return exitError{err.Error()}
	}
	defer store.Close()

	policy, err := cfg.policy()
	if err != nil {
		log.Error("Cannot use the policy", "err", err)
		return exitError{err.Error()}
	}
	reg := prometheus.NewRegistry()
	metrics := newMetrics(reg, store, log)
	api := slackClient(cfg)
	client := openai.New(openai.Config{BaseURL: cfg.OpenAIBaseURL, AdminKey: cfg.OpenAIAdminKey, Timeout: cfg.OpenAITimeout, DryRun: cfg.DryRun})
	catalog := openai.NewCachedCatalog(client, openai.CacheConfig{})
	defer catalog.Close()
	svc := &approvals.Service{
		Store:     store,
		Policy:    policy,
		IsGroup:   slackapp.IsUserGroup,
		Directory: slackapp.Directory{Client: api},
		MaxOpen:   cfg.MaxOpenPerRequester,
		Now:       time.Now,
	}
	responseURLs := slackapp.ResponseURLs{APIURL: cfg.SlackAPIURL}
	app := &slackapp.App{Service: svc, Catalog: catalog, Slack: api, Logger: log, Metrics: metrics, ResponseURLs: responseURLs}
	worker := &approvals.Worker{
		Store:       store,
		Checker:     &approvals.Checker{Catalog: catalog, Fresh: client, Policy: policy, MemberOf: svc.MemberOf},
		Granter:     client,
		Roles:       client,
		Notifier:    &slackapp.Notifier{Client: api, Metrics: metrics, ResponseURLs: responseURLs},
		Logger:      log,
		Observer:    metrics,
		MaxAttempts: cfg.OpenAIMaxAttempts,
		Deadline:    cfg.OpenAIDeadline,
		CallTimeout: 4 * cfg.OpenAITimeout, // list, group, POST and a re-check
	}

	// ready is true from start until shutdown begins. In Socket Mode /readyz
	// also needs the runner's connection, and says what it is doing.
	var ready atomic.Bool
	var runner *slackapp.SocketRunner
	if cfg.SocketMode() {
		runner = &slackapp.SocketRunner{App: app, Client: socketmode.New(api)}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := store.Ping(r.Context()); err != nil {
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case store.Ping(r.Context()) != nil:
			http.Error(w, "not ready: database unavailable", http.StatusServiceUnavailable)
		case !ready.Load():
			http.Error(w, "not ready: starting or stopping", http.StatusServiceUnavailable)
		case runner == nil:
			fmt.Fprintln(w, "ready: http mode, receiving from Slack on /slack/commands and /slack/interactions")
		default:
			if st := runner.Status(); !st.Ready() {
				http.Error(w, "not ready: "+st.String(), http.StatusServiceUnavailable)
			} else {
				fmt.Fprintln(w, "ready: "+st.String())
			}
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if !cfg.SocketMode() {
		mux.Handle("/slack/", crashHook(app.Handler(cfg.SlackSigningSecret, time.Now)))
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		log.Error("Cannot listen on ROLEGATE_ADDR: is another process using it? Set ROLEGATE_ADDR to a free host:port", "addr", cfg.Addr, "err", err)
		return exitError{fmt.Sprintf("cannot listen on ROLEGATE_ADDR %s: %v", cfg.Addr, err)}
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cancel(fmt.Errorf("http server: %w", err))
		}
	})
	wg.Go(func() {
		if err := worker.Run(ctx); err != nil {
			cancel(fmt.Errorf("worker: %w", err))
		}
	})
	mode := "http"
	if runner != nil {
		mode = "socket"
		wg.Go(func() {
			if err := runner.Run(ctx); err != nil {
				cancel(fmt.Errorf("socket mode: %w", err))
			}
		})
	}
	ready.Store(true)
	log.Info("rolegate started", "mode", mode, "addr", ln.Addr().String(), "db", where,
		"approvers", len(cfg.approvers), "approvals_required", cfg.ApprovalsRequired, "request_ttl", cfg.RequestTTL.String())

	<-ctx.Done()
	ready.Store(false)
	log.Info("rolegate stopping")
	sctx, scancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("HTTP server did not stop in time", "err", err)
	}
	wg.Wait()
	app.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		log.Error("rolegate stopped on an error", "err", cause)
		return exitError{cause.Error()}
	}
	log.Info("rolegate stopped")
	return nil
}

// servedStore is the store serve runs on: either engine.
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

func slackClient(cfg *Config) *slack.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// The worker delivers several messages at once, and clicks send notices:
	// keep those connections instead of reopening them past 2 per host.
	transport.MaxIdleConnsPerHost = 16
	opts := []slack.Option{
		slack.OptionAPIURL(cfg.SlackAPIURL),
		slack.OptionHTTPClient(&http.Client{Timeout: 15 * time.Second, Transport: transport}),
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
