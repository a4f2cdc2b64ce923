package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rolegate/rolegate/internal/approvals"
	"github.com/rolegate/rolegate/internal/slackapp"
)

// metrics exposes what rolegate does as Prometheus series.
type metrics struct {
	commands    *prometheus.CounterVec
	decisions   *prometheus.CounterVec
	openai      *prometheus.CounterVec
	revocations *prometheus.CounterVec
	deliveries  *prometheus.CounterVec
	slackErrors *prometheus.CounterVec
	storeErrors *prometheus.CounterVec
	quarantined *prometheus.CounterVec
	ack         *prometheus.HistogramVec

	// The periodic drift check's results (driftWatch).
	driftHeld, driftMissing, driftLastRun, driftSuccess prometheus.Gauge
}

var (
	_ slackapp.Metrics   = (*metrics)(nil)
	_ approvals.Observer = (*metrics)(nil)
)

func newMetrics(reg *prometheus.Registry, store approvals.Store, log *slog.Logger, dryRun bool) *metrics {
	m := &metrics{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolegate_commands_total", Help: "Slash commands by outcome (created, duplicate, help, invalid, cancelled, cancel_refused, error).",
		}, []string{"outcome"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolegate_decisions_total", Help: "Approve and Deny clicks by outcome (recorded, or why they were refused).",
		}, []string{"action", "outcome"}),
		openai: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolegate_openai_calls_total", Help: "OpenAI assignment attempts by outcome and HTTP status (0: no response).",
		}, []string{"outcome", "status"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolegate_revocations_total", Help: "Ends of grants by outcome (deleted, absent, kept, retry, failed: alert on failed) and HTTP status.",
		}, []string{"outcome", "status"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolegate_slack_deliveries_total", Help: "Outbox message deliveries to Slack by kind and outcome (ok, retry, dropped).",
		}, []string{"kind", "outcome"}),
		slackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolegate_slack_api_errors_total", Help: "Slack Web API errors by method and error code.",
		}, []string{"method", "code"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolegate_store_errors_total", Help: "Store operations that failed and are retried with back-off, by operation.",
		}, []string{"op"}),
		quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolegate_quarantined_total", Help: "Stored records that could not be read and were moved aside, by kind.",
		}, []string{"kind"}),
		ack: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rolegate_ack_seconds", Help: "Time to answer Slack, by kind (command, interaction).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"kind"}),
		driftHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rolegate_drift_held_not_granted", Help: "Group roles OpenAI lists, in groups rolegate touched, that no applied rolegate request grants (last successful drift check).",
		}),
		driftMissing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rolegate_drift_granted_missing", Help: "Roles applied rolegate requests granted that OpenAI no longer lists (last successful drift check).",
		}),
		driftLastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rolegate_drift_last_run_timestamp_seconds", Help: "When the last drift check ended, in Unix seconds; 0 before the first.",
		}),
		driftSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rolegate_drift_last_run_success", Help: "1 when the last drift check compared everything, 0 when it failed (the counts are then the previous check's).",
		}),
	}
	counts := func(pick func(approvals.Counts) int) func() float64 {
		return func() (v float64) {
			// A damaged page can make bbolt panic mid-read; a scrape must
			// not take the bot down with it.
			defer func() {
				if p := recover(); p != nil {
					log.Error("Reading the store for metrics panicked", "panic", fmt.Sprint(p))
					v = -1
				}
			}()
			c, err := store.Counts(context.Background())
			if err != nil {
				return -1
			}
			return float64(pick(c))
		}
	}
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rolegate_requests_pending", Help: "Requests waiting for a decision.",
	}, counts(func(c approvals.Counts) int { return c.Open[approvals.StatePending] }))
	outbox := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rolegate_outbox_jobs", Help: "Outgoing work (OpenAI calls, Slack messages) not yet done.",
	}, counts(func(c approvals.Counts) int { return c.Jobs }))
	quarantine := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rolegate_quarantine_records", Help: "Stored records moved aside because they could not be read (see bot check).",
	}, counts(func(c approvals.Counts) int { return c.Quarantined }))
	dry := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rolegate_dry_run", Help: "1 when ROLEGATE_DRY_RUN is on: nothing is POSTed or DELETEd at OpenAI.",
	})
	if dryRun {
		dry.Set(1)
	}
	reg.MustRegister(m.commands, m.decisions, m.openai, m.revocations, m.deliveries, m.slackErrors, m.storeErrors, m.quarantined, m.ack, pending, outbox, quarantine, dry,
		m.driftHeld, m.driftMissing, m.driftLastRun, m.driftSuccess,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) Ack(kind string, d time.Duration) { m.ack.WithLabelValues(kind).Observe(d.Seconds()) }
func (m *metrics) Command(outcome string)           { m.commands.WithLabelValues(outcome).Inc() }
func (m *metrics) Decision(action, outcome string) {
	m.decisions.WithLabelValues(action, outcome).Inc()
}
func (m *metrics) SlackError(method, code string) { m.slackErrors.WithLabelValues(method, code).Inc() }
func (m *metrics) Delivery(kind approvals.JobKind, outcome string) {
	m.deliveries.WithLabelValues(string(kind), outcome).Inc()
}
func (m *metrics) Store(op string)        { m.storeErrors.WithLabelValues(op).Inc() }
func (m *metrics) Quarantine(kind string) { m.quarantined.WithLabelValues(kind).Inc() }
func (m *metrics) Revoke(outcome string, status int) {
	m.revocations.WithLabelValues(outcome, strconv.Itoa(status)).Inc()
}
func (m *metrics) Grant(outcome string, status int) {
	m.openai.WithLabelValues(outcome, strconv.Itoa(status)).Inc()
}

// Drift records one drift check that ended at: its counts when it
// succeeded; when it ran and whether it succeeded either way. A failed
// check leaves the counts of the last one that succeeded, so an alert on
// them neither fires nor clears on an outage; alert on the success gauge
// for that.
func (m *metrics) Drift(r approvals.Report, err error, at time.Time) {
	m.driftLastRun.Set(float64(at.UnixMilli()) / 1000)
	if err != nil {
		m.driftSuccess.Set(0)
		return
	}
	m.driftHeld.Set(float64(len(r.Held)))
	m.driftMissing.Set(float64(len(r.Missing)))
	m.driftSuccess.Set(1)
}
