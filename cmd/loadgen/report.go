package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// machine describes where the figures were measured.
type machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	MemTotal string `json:"mem_total"`
	Kernel   string `json:"kernel"`
	Go       string `json:"go"`
	Disk     string `json:"disk"` // the file system holding the databases
	LoadAvg  string `json:"load_avg_at_start"`
	// PostgresDisk is the file system holding PostgreSQL's data (-postgres).
	PostgresDisk string `json:"postgres_disk,omitempty"`
}

func describeMachine(dir string) machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	m.CPUModel = firstField("/proc/cpuinfo", "model name")
	if kb := firstField("/proc/meminfo", "MemTotal"); kb != "" {
		var n float64
		fmt.Sscanf(kb, "%f", &n)
		m.MemTotal = fmt.Sprintf("%.1f GiB", n/(1<<20))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		m.LoadAvg = strings.Join(f[:min(3, len(f))], " ")
	}
	m.Disk = diskOf(dir)
	return m
}

// diskOf names dir and the file system holding it: the one of the longest
// mount point that is a prefix of dir.
func diskOf(dir string) string {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return ""
	}
	defer f.Close()
	best, disk := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Fields(sc.Text())
		if len(p) >= 3 && strings.HasPrefix(dir, p[1]) && len(p[1]) >= len(best) {
			best, disk = p[1], fmt.Sprintf("%s (%s on %s)", dir, p[2], p[0])
		}
	}
	return disk
}

func firstField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// config is the load's shape, for the report.
type config struct {
	N           int     `json:"n"`
	C           int     `json:"c"`
	Runs        int     `json:"runs"`
	Soak        int     `json:"soak"`
	Paced       int     `json:"paced"`
	History     int     `json:"history"`
	Startups    int     `json:"startups"`
	SeedSeconds float64 `json:"seed_seconds"`
	// OpenAIDelayMS is how long the fake OpenAI took to answer every call
	// in the check phases; 0 when they did not run.
	OpenAIDelayMS float64 `json:"openai_delay_ms,omitempty"`
	GOGC          string  `json:"gogc,omitempty"`
	GOMEMLIMIT    string  `json:"gomemlimit,omitempty"`
	// Postgres describes the server of a -postgres run, as it reported
	// itself; Replicas are the counts of bots measured on it, and Skipped
	// the phases -postgres turned off, and why.
	Postgres string   `json:"postgres,omitempty"`
	Replicas []int    `json:"replicas,omitempty"`
	Skipped  []string `json:"skipped,omitempty"`
}

// expand fills {N}, {C}, {SOAK} and {DELAY} in a label.
func (c config) expand(s string) string {
	return strings.NewReplacer("{N}", strconv.Itoa(c.N), "{C}", strconv.Itoa(c.C), "{SOAK}", strconv.Itoa(c.Soak),
		"{DELAY}", strconv.FormatFloat(c.OpenAIDelayMS, 'f', -1, 64)+" ms").Replace(s)
}

func configOf(o *options) config {
	c := config{N: o.n, C: o.c, Runs: o.runs, Soak: o.soak, Paced: o.paced, History: o.history, Startups: o.startups,
		GOGC: os.Getenv("GOGC"), GOMEMLIMIT: os.Getenv("GOMEMLIMIT")}
	if o.checks {
		c.OpenAIDelayMS = ms(o.openAIDelay)
	}
	if o.postgres {
		c.Replicas = slices.Clone(o.replicas)
	}
	return c
}

// verdict is one target checked against the medians.
type verdict struct {
	Figure string  `json:"figure"`
	Target string  `json:"target"`
	Median float64 `json:"median"`
	Met    bool    `json:"met"`
}

// report is the whole output.
type report struct {
	Machine machine   `json:"machine"`
	Config  config    `json:"config"`
	Runs    []figures `json:"runs"`
	Median  figures   `json:"median"`
	Min     figures   `json:"min"`
	Max     figures   `json:"max"`
	Targets []verdict `json:"targets"`
}

// row is one line of the table: rolegate's figure, its floor, a target.
type row struct {
	label string
	key   string // rolegate's figure; "" for a floor-only row
	floor string // the floor's figure, if any
	pct   bool   // show the ratio as a percentage (throughput) rather than ×
	// anonFile shows key and floor as "anon / file" in the rolegate column.
	anonFile bool
	// target, when set, is checked on the medians.
	target string
	met    func(m figures) bool
}

func atMost(key string, limit float64) func(figures) bool {
	return func(m figures) bool { return m[key] <= limit }
}

// section is a titled group of rows.
type section struct {
	title string
	rows  []row
}

// sections are bbolt's figures: the whole report without -postgres.
var sections = []section{
	{"Acks, {C} in flight (ms)", []row{
		{label: "slash command ack p50", key: "command_ack_p50_ms", floor: "floor_command_ack_p50_ms"},
		{label: "slash command ack p95", key: "command_ack_p95_ms", floor: "floor_command_ack_p95_ms"},
		{label: "slash command ack p99", key: "command_ack_p99_ms", floor: "floor_command_ack_p99_ms", target: "≤ 50 ms", met: atMost("command_ack_p99_ms", 50)},
		{label: "slash command ack max", key: "command_ack_max_ms", floor: "floor_command_ack_max_ms"},
		{label: "click ack p50", key: "click_ack_p50_ms", floor: "floor_click_ack_p50_ms"},
		{label: "click ack p95", key: "click_ack_p95_ms", floor: "floor_click_ack_p95_ms"},
		{label: "click ack p99", key: "click_ack_p99_ms", floor: "floor_click_ack_p99_ms", target: "≤ 50 ms", met: atMost("click_ack_p99_ms", 50)},
		{label: "click ack max", key: "click_ack_max_ms", floor: "floor_click_ack_max_ms"},
	}},
	{"Throughput (per second)", []row{
		{label: "durable requests created vs batched bbolt tx", key: "created_per_sec", floor: "floor_bolt_batch_tps", pct: true,
			target: "≥ 70% of floor", met: func(m figures) bool { return m["created_per_sec"] >= 0.7*m["floor_bolt_batch_tps"] }},
		{label: "durable requests created vs signature-only server", key: "created_per_sec", floor: "floor_command_rps", pct: true},
		{label: "bbolt tx one at a time (db.Update)", floor: "floor_bolt_update_tps"},
	}},
	{"Click → assignment POST at the fake OpenAI (ms)", []row{
		{label: "burst ({N} clicks, {C} in flight) p50", key: "click_assign_p50_ms"},
		{label: "burst p99", key: "click_assign_p99_ms", target: "≤ 100 ms", met: atMost("click_assign_p99_ms", 100)},
		{label: "burst max", key: "click_assign_max_ms"},
		{label: "one at a time p50", key: "paced_click_assign_p50_ms"},
		{label: "one at a time p99", key: "paced_click_assign_p99_ms", target: "≤ 100 ms", met: atMost("paced_click_assign_p99_ms", 100)},
		{label: "one at a time max", key: "paced_click_assign_max_ms"},
	}},
	{"Command → approval message posted, fake OpenAI answering every call in {DELAY}, {C} in flight (ms)", []row{
		{label: "cold catalog (a fresh bot's first burst of {C}) p50", key: "checks_cold_approval_p50_ms"},
		{label: "cold catalog p99", key: "checks_cold_approval_p99_ms", target: "≤ 500 ms", met: atMost("checks_cold_approval_p99_ms", 500)},
		{label: "warm catalog (the next burst of {C}) p50", key: "checks_warm_approval_p50_ms"},
		{label: "warm catalog p99", key: "checks_warm_approval_p99_ms", target: "≤ 150 ms", met: atMost("checks_warm_approval_p99_ms", 150)},
		{label: "catalog list calls during the warm burst (0: it was warm)", key: "checks_warm_list_calls"},
		{label: "burst of {N} on a fresh bot p50", key: "checks_burst_approval_p50_ms"},
		{label: "burst of {N} on a fresh bot p99", key: "checks_burst_approval_p99_ms"},
		{label: "slash command ack p50, cold burst (checks run after the ack)", key: "checks_cold_command_ack_p50_ms"},
		{label: "slash command ack p99, cold burst", key: "checks_cold_command_ack_p99_ms"},
		{label: "slash command ack p99, warm burst", key: "checks_warm_command_ack_p99_ms"},
	}},
	{"Calls to the fake OpenAI per request, burst of {N} on a fresh bot", []row{
		{label: "catalog list calls per request (projects, groups, project roles)", key: "checks_list_calls_per_request",
			target: "≤ 0.1", met: atMost("checks_list_calls_per_request", 0.1)},
		{label: "  list-projects calls in the burst", key: "checks_list_projects_calls"},
		{label: "  list-groups calls in the burst", key: "checks_list_groups_calls"},
		{label: "  list-project-roles calls in the burst", key: "checks_list_project_roles_calls"},
		{label: "group-role checks per request (uncached, the freshness check)", key: "checks_group_role_checks_per_request",
			target: "1 (expected)", met: func(m figures) bool { return m["checks_group_role_checks_per_request"] == 1 }},
	}},
	{"Acks one at a time (ms)", []row{
		{label: "slash command ack p50", key: "paced_command_ack_p50_ms"},
		{label: "slash command ack p99", key: "paced_command_ack_p99_ms"},
		{label: "click ack p50", key: "paced_click_ack_p50_ms"},
		{label: "click ack p99", key: "paced_click_ack_p99_ms"},
	}},
	{"Bot memory, MiB (anon: heap, stacks; file: the mapped binary and database)", []row{
		{label: "idle RSS after start", key: "idle_rss_mib", target: "≤ 25 MiB", met: atMost("idle_rss_mib", 25)},
		{label: "  of which anon / file", key: "idle_rss_anon_mib", floor: "idle_rss_file_mib", anonFile: true},
		{label: "peak RSS (VmHWM), measured round", key: "peak_rss_mib"},
		{label: "RSS after the measured round", key: "rss_after_run_mib"},
		{label: "  of which anon / file", key: "rss_after_run_anon_mib", floor: "rss_after_run_file_mib", anonFile: true},
		{label: "RSS after {SOAK} more requests", key: "rss_after_soak1_mib", target: "≤ 60 MiB", met: atMost("rss_after_soak1_mib", 60)},
		{label: "  of which anon / file", key: "rss_after_soak1_anon_mib", floor: "rss_after_soak1_file_mib", anonFile: true},
		{label: "RSS after {SOAK} more again", key: "rss_after_soak2_mib", target: "≤ 60 MiB, ≤ +10%",
			met: func(m figures) bool {
				return m["rss_after_soak2_mib"] <= 60 && m["rss_after_soak2_mib"] <= 1.1*m["rss_after_soak1_mib"]
			}},
		{label: "  of which anon / file", key: "rss_after_soak2_anon_mib", floor: "rss_after_soak2_file_mib", anonFile: true},
		{label: "peak RSS (VmHWM), all rounds", key: "peak_rss_soak_mib"},
		{label: "database file after the memory rounds", key: "rss_after_soak2_db_file_mib"},
	}},
	{"Start-up to a healthy /healthz (ms)", []row{
		{label: "empty database", key: "startup_empty_ms"},
		{label: "with the finished history", key: "startup_history_ms", target: "≤ 300 ms", met: atMost("startup_history_ms", 300)},
		{label: "RSS when healthy, with history (MiB)", key: "startup_history_rss_mib"},
	}},
	{"The load side (measured round)", []row{
		{label: "bot CPU, % of one core", key: "bot_cpu_pct"},
		{label: "loadgen + fakes CPU, % of one core", key: "loadgen_cpu_pct"},
		{label: "fake Slack calls", key: "fake_slack_calls"},
		{label: "fake Slack service time mean (ms)", key: "fake_slack_mean_ms"},
		{label: "fake Slack service time p99 (ms)", key: "fake_slack_p99_ms"},
		{label: "fake OpenAI calls", key: "fake_openai_calls"},
		{label: "fake OpenAI service time mean (ms)", key: "fake_openai_mean_ms"},
		{label: "fake OpenAI service time p99 (ms)", key: "fake_openai_p99_ms"},
		{label: "round wall time, first command → last result (s)", key: "round_seconds"},
		{label: "memory round 1: wall time (s)", key: "rss_after_soak1_seconds"},
		{label: "memory round 1: created /s", key: "rss_after_soak1_created_per_sec"},
		{label: "memory round 1: click → assignment p99 (ms)", key: "rss_after_soak1_click_assign_p99_ms"},
		{label: "memory round 2: wall time (s)", key: "rss_after_soak2_seconds"},
		{label: "memory round 2: created /s", key: "rss_after_soak2_created_per_sec"},
		{label: "memory round 2: click → assignment p99 (ms)", key: "rss_after_soak2_click_assign_p99_ms"},
	}},
}

// summarise computes the medians (and ranges) over the runs and checks the
// targets on the medians.
func (r *report) summarise() {
	r.Median, r.Min, r.Max = figures{}, figures{}, figures{}
	keys := map[string]bool{}
	for _, f := range r.Runs {
		for k := range f {
			keys[k] = true
		}
	}
	for k := range keys {
		var v []float64
		for _, f := range r.Runs {
			if x, ok := f[k]; ok {
				v = append(v, x)
			}
		}
		r.Median[k], r.Min[k], r.Max[k] = median(v), slices.Min(v), slices.Max(v)
	}
	r.Targets = nil
	for _, s := range r.allSections() {
		for _, row := range s.rows {
			if row.met == nil {
				continue
			}
			if _, ok := r.Median[row.key]; !ok {
				continue
			}
			r.Targets = append(r.Targets, verdict{Figure: r.Config.expand(row.label), Target: row.target, Median: round2(r.Median[row.key]), Met: row.met(r.Median)})
		}
	}
}

func round2(v float64) float64 {
	return float64(int64(v*100+0.5)) / 100
}

func num(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v > 0 && v < 0.1:
		return fmt.Sprintf("%.3f", v) // list calls per request: 3 in 1,000 is not 0.00
	}
	return fmt.Sprintf("%.2f", v)
}

func (r *report) print(w io.Writer, markdown bool) {
	c := r.Config
	m := r.Machine
	if len(c.Replicas) == 0 {
		fmt.Fprintf(w, "rolegate load report: %d commands then %d approving clicks, %d in flight; soak 2×%d; start-up with %d finished requests\n",
			c.N, c.N, c.C, c.Soak, c.History)
	} else {
		var counts []string
		for _, k := range c.Replicas {
			counts = append(counts, strconv.Itoa(k))
		}
		fmt.Fprintf(w, "rolegate load report: %d commands then %d approving clicks, %d in flight, on bbolt (one bot) and on PostgreSQL with %s bots sharing one database\n",
			c.N, c.N, c.C, strings.Join(counts, ", "))
	}
	fmt.Fprintf(w, "machine: %d CPUs (%s), %s RAM, Linux %s, %s; databases in %s; load average at start %s\n",
		m.CPUs, m.CPUModel, m.MemTotal, m.Kernel, m.Go, m.Disk, m.LoadAvg)
	if len(c.Replicas) > 0 {
		fmt.Fprintf(w, "postgresql: %s, on the same machine, data in %s; started by loadgen (internal/pgtest)\n", c.Postgres, m.PostgresDisk)
		fmt.Fprintf(w, "postgresql rows: the bots share one fake Slack and one fake OpenAI; commands go round-robin over them, each click to another bot than its command; floor column = bbolt's figure in the same run, ratio = PostgreSQL ÷ bbolt\n")
		for _, s := range c.Skipped {
			fmt.Fprintf(w, "skipped with -postgres: %s\n", s)
		}
	}
	spread := "median"
	if len(r.Runs) > 1 {
		spread = fmt.Sprintf("median of %d runs", len(r.Runs))
	}
	fmt.Fprintf(w, "figures: %s (min–max in brackets); ratio = rolegate ÷ floor\n\n", spread)

	var tw *tabwriter.Writer
	line := func(cells ...string) {
		if markdown {
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
			return
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if markdown {
		line("figure", "rolegate", "floor", "ratio", "target", "met")
		line("---", "---:", "---:", "---:", "---", "---")
	} else {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		line("figure", "rolegate", "floor", "ratio", "target", "met")
	}
	cell := func(key string) string {
		v, ok := r.Median[key]
		if !ok {
			return "—"
		}
		s := num(v)
		if len(r.Runs) > 1 && r.Min[key] != r.Max[key] {
			s += fmt.Sprintf(" (%s–%s)", num(r.Min[key]), num(r.Max[key]))
		}
		return s
	}
	for _, s := range r.allSections() {
		// A -postgres run skips whole phases; their titles alone would
		// read as rows missing. (Without -postgres the table is as it was.)
		if len(c.Replicas) > 0 && !r.measured(s) {
			continue
		}
		title := c.expand(s.title)
		if markdown {
			line("**"+title+"**", "", "", "", "", "")
		} else {
			line(title, "", "", "", "", "")
		}
		for _, row := range s.rows {
			if row.key != "" {
				if _, ok := r.Median[row.key]; !ok {
					continue
				}
			}
			value, floor, ratio, met := "—", "", "", ""
			if row.key != "" {
				value = cell(row.key)
			}
			if row.anonFile {
				value = num(r.Median[row.key]) + " / " + num(r.Median[row.floor])
			} else if row.floor != "" {
				floor = cell(row.floor)
				if f := r.Median[row.floor]; row.key != "" && f > 0 {
					if row.pct {
						ratio = fmt.Sprintf("%.0f%%", 100*r.Median[row.key]/f)
					} else {
						ratio = fmt.Sprintf("%.1f×", r.Median[row.key]/f)
					}
				}
			}
			if row.met != nil {
				met = "yes"
				if !row.met(r.Median) {
					met = "NO"
				}
			}
			label := "  " + c.expand(row.label)
			if markdown {
				label = c.expand(row.label)
			}
			line(label, value, floor, ratio, row.target, met)
		}
	}
	if tw != nil {
		tw.Flush()
	}
}

// measured tells whether any row of s has a figure.
func (r *report) measured(s section) bool {
	for _, row := range s.rows {
		if _, ok := r.Median[row.key]; ok || row.key == "" {
			return true
		}
	}
	return false
}

// allSections are the report's sections: bbolt's, and with -postgres the
// PostgreSQL rows after them.
func (r *report) allSections() []section {
	if len(r.Config.Replicas) == 0 {
		return sections
	}
	all := make([]section, 0, len(sections)+len(pgGroups))
	for _, s := range sections {
		all = append(all, section{title: "bbolt, one bot: " + s.title, rows: s.rows})
	}
	return append(all, pgSections(r.Config.Replicas)...)
}

// pgFigure is a figure measured on PostgreSQL, shown for each count of
// replicas beside bbolt's.
type pgFigure struct {
	label string
	key   string // PostgreSQL's is pgKey(k, key)
	floor string // bbolt's figure in the same run, if it has one
	pct   bool   // show the ratio as a percentage (throughput)
	// target, when set, is checked on the medians by met.
	target string
	met    func(pg, bbolt float64) bool
}

// pgGroups are the PostgreSQL sections. Each figure gets one row per count
// of replicas, next to each other, so the table reads how it changes with
// them.
var pgGroups = []struct {
	title   string
	figures []pgFigure
}{
	{"PostgreSQL against bbolt: acks, {C} in flight (ms)", []pgFigure{
		{label: "slash command ack p50", key: "command_ack_p50_ms", floor: "command_ack_p50_ms"},
		// Issue 14: a durable ack on PostgreSQL within 2× of bbolt's.
		{label: "slash command ack p99", key: "command_ack_p99_ms", floor: "command_ack_p99_ms",
			target: "≤ 2× bbolt", met: func(pg, bbolt float64) bool { return pg <= 2*bbolt }},
		{label: "slash command ack max", key: "command_ack_max_ms", floor: "command_ack_max_ms"},
		{label: "click ack p50", key: "click_ack_p50_ms", floor: "click_ack_p50_ms"},
		{label: "click ack p99", key: "click_ack_p99_ms", floor: "click_ack_p99_ms"},
		{label: "slash commands answered after Slack's 3 s (of {N})", key: "command_ack_late", floor: "command_ack_late"},
		{label: "clicks answered after Slack's 3 s (of {N})", key: "click_ack_late", floor: "click_ack_late"},
	}},
	{"PostgreSQL against bbolt: throughput (per second)", []pgFigure{
		{label: "durable requests created", key: "created_per_sec", floor: "created_per_sec", pct: true},
		{label: "outbox jobs claimed and done (claims)", key: "jobs_per_sec"},
	}},
	{"PostgreSQL against bbolt: click → assignment POST at the fake OpenAI (ms)", []pgFigure{
		{label: "burst ({N} clicks, {C} in flight) p50", key: "click_assign_p50_ms", floor: "click_assign_p50_ms"},
		{label: "burst p99", key: "click_assign_p99_ms", floor: "click_assign_p99_ms"},
		{label: "burst max", key: "click_assign_max_ms", floor: "click_assign_max_ms"},
	}},
	{"PostgreSQL against bbolt: one at a time (ms)", []pgFigure{
		{label: "slash command ack p50", key: "paced_command_ack_p50_ms", floor: "paced_command_ack_p50_ms"},
		{label: "slash command ack p99", key: "paced_command_ack_p99_ms", floor: "paced_command_ack_p99_ms"},
		{label: "click ack p99", key: "paced_click_ack_p99_ms", floor: "paced_click_ack_p99_ms"},
		{label: "click → assignment POST p99", key: "paced_click_assign_p99_ms", floor: "paced_click_assign_p99_ms"},
	}},
	{"PostgreSQL against bbolt: the load side (measured round)", []pgFigure{
		{label: "bots' CPU, all replicas, % of one core", key: "bot_cpu_pct", floor: "bot_cpu_pct"},
		{label: "PostgreSQL server CPU, % of one core", key: "postgres_cpu_pct"},
		{label: "loadgen + fakes CPU, % of one core", key: "loadgen_cpu_pct", floor: "loadgen_cpu_pct"},
		{label: "idle RSS after start, largest replica (MiB)", key: "idle_rss_mib", floor: "idle_rss_mib"},
		{label: "peak RSS (VmHWM), largest replica (MiB)", key: "peak_rss_mib", floor: "peak_rss_mib"},
		{label: "RSS after the round, largest replica (MiB)", key: "rss_after_run_mib", floor: "rss_after_run_mib"},
		{label: "RSS after the round, all replicas (MiB)", key: "rss_after_run_all_mib"},
		{label: "outbox jobs done per request", key: "jobs_per_request"},
		{label: "backends waiting for a lock, mean (sampled every 100 ms)", key: "lock_waiters_mean"},
		{label: "backends waiting for a lock, most at once", key: "lock_waiters_max"},
		{label: "transactions rolled back (the database's whole life)", key: "rollbacks"},
		{label: "deadlocks detected (the database's whole life)", key: "deadlocks"},
		{label: "fake Slack calls", key: "fake_slack_calls", floor: "fake_slack_calls"},
		{label: "fake OpenAI calls", key: "fake_openai_calls", floor: "fake_openai_calls"},
		{label: "round wall time, first command → last result (s)", key: "round_seconds", floor: "round_seconds"},
		{label: "start-up to a healthy /healthz, first replica (creates the schema; ms)", key: "startup_first_ms", floor: "startup_empty_ms"},
		{label: "start-up, the other replicas, median (ms)", key: "startup_later_ms", floor: "startup_empty_ms"},
	}},
}

// pgSections lays pgGroups out for the replica counts measured. Every
// label names the engine and the replicas, so a row copied alone, or a
// target in the JSON, still says what it measured.
func pgSections(replicas []int) []section {
	var out []section
	for _, g := range pgGroups {
		s := section{title: g.title}
		for _, f := range g.figures {
			for _, k := range replicas {
				r := row{label: "PostgreSQL, " + replicasWord(k) + ": " + f.label, key: pgKey(k, f.key), floor: f.floor, pct: f.pct, target: f.target}
				if f.met != nil {
					pg, bbolt, met := r.key, f.floor, f.met
					r.met = func(m figures) bool { return met(m[pg], m[bbolt]) }
				}
				s.rows = append(s.rows, r)
			}
		}
		out = append(out, s)
	}
	return out
}
