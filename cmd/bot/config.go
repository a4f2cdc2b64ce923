package main

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/rolegate/rolegate/internal/slackapp"
)

// Config is rolegate's whole configuration, read from the environment.
type Config struct {
	SlackBotToken      string        `env:"SLACK_BOT_TOKEN,required,notEmpty"`
	SlackAppToken      string        `env:"SLACK_APP_TOKEN"`
	SlackSigningSecret string        `env:"SLACK_SIGNING_SECRET"`
	SlackAPIURL        string        `env:"SLACK_API_URL" envDefault:"https://slack.com/api/"`
	OpenAIAdminKey     string        `env:"OPENAI_ADMIN_KEY,required,notEmpty"`
	OpenAIBaseURL      string        `env:"OPENAI_BASE_URL" envDefault:"https://api.openai.com/v1"`
	DB                 string        `env:"ROLEGATE_DB" envDefault:"rolegate.db"`
	Addr               string        `env:"ROLEGATE_ADDR" envDefault:":8080"`
	Approvers          string        `env:"ROLEGATE_APPROVERS,required,notEmpty"`
	ApprovalsRequired  int           `env:"ROLEGATE_APPROVALS_REQUIRED" envDefault:"1"`
	RequestTTL         time.Duration `env:"ROLEGATE_REQUEST_TTL" envDefault:"24h"`
	LogFormat          string        `env:"ROLEGATE_LOG_FORMAT" envDefault:"json"`
	LogLevel           string        `env:"ROLEGATE_LOG_LEVEL" envDefault:"info"`
	OpenAIMaxAttempts  int           `env:"ROLEGATE_OPENAI_MAX_ATTEMPTS" envDefault:"5"`
	OpenAIDeadline     time.Duration `env:"ROLEGATE_OPENAI_DEADLINE" envDefault:"10m"`
	OpenAITimeout      time.Duration `env:"ROLEGATE_OPENAI_TIMEOUT" envDefault:"15s"`

	approvers []string
}

// SocketMode reports whether the bot receives from Slack over Socket Mode.
func (c *Config) SocketMode() bool { return c.SlackAppToken != "" }

// loadConfig reads and validates the configuration. Its error is one line
// per problem, each naming the variable; it never contains a value.
func loadConfig(getenv func(string) string) (*Config, error) {
	var cfg Config
	params, err := env.GetFieldParams(&cfg)
	if err != nil {
		return nil, err
	}
	environ := map[string]string{}
	for _, p := range params {
		if v := getenv(p.Key); v != "" {
			environ[p.Key] = v
		}
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: environ}); err != nil {
		return nil, configError(err)
	}
	var problems []string
	bad := func(key, format string, args ...any) {
		problems = append(problems, key+": "+fmt.Sprintf(format, args...))
	}
	if !strings.HasPrefix(cfg.SlackBotToken, "xoxb-") {
		bad("SLACK_BOT_TOKEN", "must be a bot token starting with xoxb-")
	}
	if cfg.SlackAppToken != "" && !strings.HasPrefix(cfg.SlackAppToken, "xapp-") {
		bad("SLACK_APP_TOKEN", "must be an app-level token starting with xapp- (or unset for HTTP mode)")
	}
	if cfg.SlackAppToken == "" && cfg.SlackSigningSecret == "" {
		bad("SLACK_SIGNING_SECRET", "is required in HTTP mode (set SLACK_APP_TOKEN to use Socket Mode instead)")
	}
	for _, u := range []struct{ key, v string }{{"SLACK_API_URL", cfg.SlackAPIURL}, {"OPENAI_BASE_URL", cfg.OpenAIBaseURL}} {
		if p, err := url.Parse(u.v); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad(u.key, "must be an http(s) URL")
		}
	}
	if !strings.HasSuffix(cfg.SlackAPIURL, "/") {
		cfg.SlackAPIURL += "/"
	}
	cfg.OpenAIBaseURL = strings.TrimRight(cfg.OpenAIBaseURL, "/")
	if cfg.approvers, err = slackapp.ParseUserIDs(cfg.Approvers); err != nil {
		bad("ROLEGATE_APPROVERS", "%v", err)
	}
	if cfg.ApprovalsRequired < 1 || cfg.ApprovalsRequired > 20 {
		bad("ROLEGATE_APPROVALS_REQUIRED", "must be between 1 and 20")
	} else if direct := countDirect(cfg.approvers); direct > 0 && direct == len(cfg.approvers) && cfg.ApprovalsRequired > direct {
		bad("ROLEGATE_APPROVALS_REQUIRED", "is %d but ROLEGATE_APPROVERS lists only %d people", cfg.ApprovalsRequired, direct)
	}
	if cfg.RequestTTL < time.Minute || cfg.RequestTTL > 30*24*time.Hour {
		bad("ROLEGATE_REQUEST_TTL", "must be a duration between 1m and 720h, like 24h")
	}
	if cfg.LogFormat != "json" && cfg.LogFormat != "text" {
		bad("ROLEGATE_LOG_FORMAT", "must be json or text")
	}
	switch cfg.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("ROLEGATE_LOG_LEVEL", "must be debug, info, warn or error")
	}
	if cfg.OpenAIMaxAttempts < 1 || cfg.OpenAIMaxAttempts > 100 {
		bad("ROLEGATE_OPENAI_MAX_ATTEMPTS", "must be between 1 and 100")
	}
	if cfg.OpenAIDeadline <= 0 {
		bad("ROLEGATE_OPENAI_DEADLINE", "must be a positive duration, like 10m")
	}
	if cfg.OpenAITimeout <= 0 {
		bad("ROLEGATE_OPENAI_TIMEOUT", "must be a positive duration, like 15s")
	}
	if cfg.DB == "" {
		bad("ROLEGATE_DB", "must be a file path")
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return &cfg, nil
}

func countDirect(ids []string) int {
	n := 0
	for _, id := range ids {
		if !strings.HasPrefix(id, "S") {
			n++
		}
	}
	return n
}

// configError rewrites caarlos0/env's errors to name the variable, never the
// value (a malformed secret must not be echoed).
func configError(err error) error {
	var agg env.AggregateError
	errs := []error{err}
	if errors.As(err, &agg) {
		errs = agg.Errors
	}
	keys := fieldKeys()
	var lines []string
	for _, e := range errs {
		var notSet env.VarIsNotSetError
		var empty env.EmptyVarError
		var parse env.ParseError
		switch {
		case errors.As(e, &notSet):
			lines = append(lines, notSet.Key+": is required but not set")
		case errors.As(e, &empty):
			lines = append(lines, empty.Key+": is required but empty")
		case errors.As(e, &parse):
			lines = append(lines, fmt.Sprintf("%s: is not a valid %s", keys[parse.Name], kindName(parse.Type)))
		default:
			lines = append(lines, e.Error())
		}
	}
	return errors.New(strings.Join(lines, "\n"))
}

func kindName(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "duration (like 24h or 90m)"
	}
	if t.Kind() == reflect.Int {
		return "whole number"
	}
	return t.String()
}

func fieldKeys() map[string]string {
	keys := map[string]string{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		keys[f.Name], _, _ = strings.Cut(f.Tag.Get("env"), ",")
	}
	return keys
}
