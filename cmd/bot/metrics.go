package main

import (
	"context"
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
	deliveries  *prometheus.CounterVec
	slackErrors *prometheus.CounterVec
	ack         *prometheus.HistogramVec
}

var (
	_ slackapp.Metrics   = (*metrics)(nil)
	_ approvals.Observer = (*metrics)(nil)
)

func newMetrics(reg *prometheus.Registry, store *approvals.Store) *metrics {
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
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolegate_slack_deliveries_total", Help: "Outbox message deliveries to Slack by kind and outcome (ok, retry, dropped).",
		}, []string{"kind", "outcome"}),
		slackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rolegate_slack_api_errors_total", Help: "Slack Web API errors by method and error code.",
		}, []string{"method", "code"}),
		ack: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "rolegate_ack_seconds", Help: "Time to answer Slack, by kind (command, interaction).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"kind"}),
	}
	pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rolegate_requests_pending", Help: "Requests waiting for a decision.",
	}, func() float64 {
		p, _, err := store.CountOpen(context.Background())
		if err != nil {
			return -1
		}
		return float64(p)
	})
	outbox := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rolegate_outbox_jobs", Help: "Outgoing work (OpenAI calls, Slack messages) not yet done.",
	}, func() float64 {
		n, err := store.PendingJobs(context.Background())
		if err != nil {
			return -1
		}
		return float64(n)
	})
	reg.MustRegister(m.commands, m.decisions, m.openai, m.deliveries, m.slackErrors, m.ack, pending, outbox,
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
func (m *metrics) Grant(outcome string, status int) {
	m.openai.WithLabelValues(outcome, strconv.Itoa(status)).Inc()
}
