package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/rolegate/rolegate/internal/approvals"
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
	Approvers          string        `env:"ROLEGATE_APPROVERS"` // required without Policy: checked in loadConfig
	ApprovalsRequired  int           `env:"ROLEGATE_APPROVALS_REQUIRED" envDefault:"1"`
	RequestTTL         time.Duration `env:"ROLEGATE_REQUEST_TTL" envDefault:"24h"`
	LogFormat          string        `env:"ROLEGATE_LOG_FORMAT" envDefault:"json"`
	LogLevel           string        `env:"ROLEGATE_LOG_LEVEL" envDefault:"info"`
	OpenAIMaxAttempts  int           `env:"ROLEGATE_OPENAI_MAX_ATTEMPTS" envDefault:"5"`
	OpenAIDeadline     time.Duration `env:"ROLEGATE_OPENAI_DEADLINE" envDefault:"10m"`
	OpenAITimeout      time.Duration `env:"ROLEGATE_OPENAI_TIMEOUT" envDefault:"15s"`
	// Policy is the path of the policy file; its content is checked by
	// loadPolicy, not here.
	Policy string `env:"ROLEGATE_POLICY"`
	// MaxOpenPerRequester bounds the open (checking or pending) requests of
	// one person.
	MaxOpenPerRequester int  `env:"ROLEGATE_MAX_OPEN_PER_REQUESTER" envDefault:"5"`
	DryRun              bool `env:"ROLEGATE_DRY_RUN" envDefault:"false"`
	// DriftInterval is how often the serving bot runs bot drift's check
	// (jittered); 0 turns the periodic check off.
	DriftInterval time.Duration `env:"ROLEGATE_DRIFT_INTERVAL" envDefault:"1h"`
	// DatabaseURL, when set, keeps state in PostgreSQL instead of DB. It is a
	// secret (it usually holds a password).
	DatabaseURL string `env:"ROLEGATE_DATABASE_URL"`

	approvers []string
}

// SocketMode reports whether the bot receives from Slack over Socket Mode.
func (c *Config) SocketMode() bool { return c.SlackAppToken != "" }

// secrets returns the configured values that must never be shown: the
// logger blanks each of them. The database URL's password is listed on its
// own too, since a driver's error may quote it without the rest of the URL.
func (c *Config) secrets() []string {
	s := []string{c.SlackBotToken, c.SlackAppToken, c.SlackSigningSecret, c.OpenAIAdminKey, c.DatabaseURL}
	if u, err := url.Parse(c.DatabaseURL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			s = append(s, pw)
		}
	}
	return s
}

// configProblems is every problem loadConfig found, one line each, "VARIABLE:
// what is wrong", in the order of the Config fields. No line contains a
// value.
type configProblems []string

func (p configProblems) Error() string { return strings.Join(p, "\n") }

// Summary is the header printed above the lines: "1 problem in the
// configuration", "3 problems in the configuration".
func (p configProblems) Summary() string {
	if len(p) == 1 {
		return "1 problem in the configuration"
	}
	return fmt.Sprintf("%d problems in the configuration", len(p))
}

// loadConfig reads and validates the configuration in one pass: a value env
// cannot parse and a value rolegate's own checks refuse are reported together,
// so an operator fixes everything in one round. Its error is a configProblems.
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

	reported := map[string]string{} // variable → its problem
	bad := func(key, format string, args ...any) {
		// One line per variable, the first problem found: a value env could
		// not parse is left zero and would fail the range check too.
		if _, dup := reported[key]; !dup {
			reported[key] = fmt.Sprintf(format, args...)
		}
	}
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: environ}); err != nil {
		envProblems(err, bad)
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
		if problem := checkAPIURL(u.v); problem != "" {
			bad(u.key, "%s", problem)
		}
	}
	if !strings.HasSuffix(cfg.SlackAPIURL, "/") {
		cfg.SlackAPIURL += "/"
	}
	cfg.OpenAIBaseURL = strings.TrimRight(cfg.OpenAIBaseURL, "/")

	if cfg.Policy != "" {
		if problem := checkReadableFile(cfg.Policy); problem != "" {
			bad("ROLEGATE_POLICY", "%s", problem)
		}
	}
	switch {
	case cfg.Approvers != "":
		if cfg.approvers, err = slackapp.ParseUserIDs(cfg.Approvers); err != nil {
			bad("ROLEGATE_APPROVERS", "%v", err)
		}
	case cfg.Policy == "":
		bad("ROLEGATE_APPROVERS", "is required without ROLEGATE_POLICY (a policy file names approvers per rule)")
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
	if cfg.MaxOpenPerRequester < 1 || cfg.MaxOpenPerRequester > 1000 {
		bad("ROLEGATE_MAX_OPEN_PER_REQUESTER", "must be between 1 and 1000")
	}
	if cfg.DriftInterval != 0 && (cfg.DriftInterval < time.Minute || cfg.DriftInterval > 30*24*time.Hour) {
		bad("ROLEGATE_DRIFT_INTERVAL", "must be 0 (off) or a duration between 1m and 720h, like 1h")
	}
	if cfg.DatabaseURL != "" && !isPostgresURL(cfg.DatabaseURL) {
		bad("ROLEGATE_DATABASE_URL", "must be a PostgreSQL URL, postgres://user:password@host:5432/dbname (or unset to use ROLEGATE_DB)")
	}

	if len(reported) > 0 {
		return nil, sortedProblems(reported)
	}
	return &cfg, nil
}

// envProblems turns caarlos0/env's errors into one problem per variable,
// never quoting the value (a malformed secret must not be echoed; env's own
// ParseError text does quote it).
func envProblems(err error, bad func(key, format string, args ...any)) {
	var agg env.AggregateError
	errs := []error{err}
	if errors.As(err, &agg) {
		errs = agg.Errors
	}
	keys := fieldKeys()
	for _, e := range errs {
		var notSet env.VarIsNotSetError
		var empty env.EmptyVarError
		var parse env.ParseError
		switch {
		case errors.As(e, &notSet):
			bad(notSet.Key, "is required but not set")
		case errors.As(e, &empty):
			bad(empty.Key, "is required but empty")
		case errors.As(e, &parse):
			bad(keys[parse.Name], "is not a valid %s", kindName(parse.Type))
		default:
			bad("configuration", "%s", e.Error())
		}
	}
}

// sortedProblems orders the problems as the variables appear in Config (the
// order of DESIGN.md's table), so the same mistakes always read the same.
func sortedProblems(reported map[string]string) configProblems {
	order := map[string]int{}
	for i, k := range fieldOrder() {
		order[k] = i + 1
	}
	keys := make([]string, 0, len(reported))
	for k := range reported {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if order[a] != order[b] {
			return order[a] - order[b]
		}
		return strings.Compare(a, b)
	})
	p := make(configProblems, 0, len(keys))
	for _, k := range keys {
		p = append(p, k+": "+reported[k])
	}
	return p
}

// checkAPIURL returns what is wrong with an API base URL, or "". Plain http
// is allowed only to a loopback host (tests, a local proxy): anywhere else it
// would send tokens in clear text.
func checkAPIURL(raw string) string {
	const rule = "must be an https:// URL (http:// is allowed only for a loopback host: 127.0.0.0/8, ::1 or localhost)"
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Hostname() == "" {
		return rule
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		if isLoopbackHost(u.Hostname()) {
			return ""
		}
	}
	return rule
}

// isLoopbackHost reports whether host (no port, no brackets) is localhost or
// a loopback IP address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkReadableFile returns what is wrong with path as a file to read, or "".
func checkReadableFile(path string) string {
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "names a file that does not exist"
	case errors.Is(err, fs.ErrPermission):
		return "names a file rolegate may not read"
	case err != nil:
		return "names a file that cannot be opened"
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return "names a directory, not a file"
	}
	return ""
}

// isPostgresURL reports whether raw is a postgres:// or postgresql:// URL.
// The host may be empty (postgres:///db?host=/run/postgresql is a Unix
// socket). Its parse error is never shown: it would quote the URL, password
// included.
func isPostgresURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql")
}

func countDirect(ids []string) int {
	n := 0
	for _, id := range ids {
		if !slackapp.IsUserGroup(id) {
			n++
		}
	}
	return n
}

func kindName(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "duration (like 24h or 90m)"
	}
	switch t.Kind() {
	case reflect.Int:
		return "whole number"
	case reflect.Bool:
		return "boolean (true or false)"
	}
	return t.String()
}

// fieldKeys maps each Config field name to its variable.
func fieldKeys() map[string]string {
	keys := map[string]string{}
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		if key, _, _ := strings.Cut(f.Tag.Get("env"), ","); key != "" {
			keys[f.Name] = key
		}
	}
	return keys
}

// fieldOrder lists the variables in the order of the Config fields.
func fieldOrder() []string {
	var keys []string
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		if key, _, _ := strings.Cut(t.Field(i).Tag.Get("env"), ","); key != "" {
			keys = append(keys, key)
		}
	}
	return keys
}

// policy is the policy the bot decides by: the file ROLEGATE_POLICY names,
// or the one rule the environment variables form.
func (c *Config) policy() (approvals.Policy, error) {
	if c.Policy != "" {
		return loadPolicy(c.Policy)
	}
	p := approvals.DefaultPolicy(c.approvers, c.ApprovalsRequired, c.RequestTTL)
	if err := p.Validate(slackapp.IsUserGroup); err != nil {
		return approvals.Policy{}, err
	}
	return p, nil
}
