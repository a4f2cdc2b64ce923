package manifest

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// defaultPort is the port of ROLEGATE_ADDR's default (":8080", DESIGN.md).
const defaultPort = "8080"

// nonrootUID is the uid (and gid) of the nonroot user in distroless images.
const nonrootUID = "65532"

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper-cased: FROM, RUN, COPY…
	args string
	line int
}

// String returns the instruction as written, for failure messages.
func (in instruction) String() string { return in.cmd + " " + in.args }

// stage is one build stage: its FROM and the instructions after it.
type stage struct {
	image string
	name  string
	body  []instruction
}

// all returns the stage's instructions named cmd, in order.
func (s stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range s.body {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// parseDockerfile splits the Dockerfile at the module root into stages. It
// understands what this repository's Dockerfile uses: comments (parser
// directives are comments to it), backslash continuations and FROM with
// --platform and AS.
func parseDockerfile(t testing.TB) []stage {
	t.Helper()
	f, err := os.Open(filepath.Join(moduleRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	var (
		stages  []stage
		pending strings.Builder
		start   int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue // comments may sit inside a continuation too
		}
		if pending.Len() == 0 {
			start = n
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(line)
		cmd, args, _ := strings.Cut(pending.String(), " ")
		pending.Reset()
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.Join(strings.Fields(args), " "), line: start}

		if in.cmd != "FROM" {
			if len(stages) == 0 {
				if in.cmd == "ARG" {
					continue // ARG before the first FROM is allowed
				}
				t.Fatalf("Dockerfile:%d: %s before FROM", in.line, in.cmd)
			}
			stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
			continue
		}
		var s stage
		fields := slices.DeleteFunc(strings.Fields(in.args), func(f string) bool { return strings.HasPrefix(f, "--") })
		switch {
		case len(fields) == 1:
			s.image = fields[0]
		case len(fields) == 3 && strings.EqualFold(fields[1], "AS"):
			s.image, s.name = fields[0], fields[2]
		default:
			t.Fatalf("Dockerfile:%d: cannot read %q", in.line, in)
		}
		stages = append(stages, s)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(stages) == 0 {
		t.Fatal("Dockerfile has no FROM")
	}
	return stages
}

// envOf returns the variables an ENV instruction sets, in either form
// (ENV k=v k2=v2, or the legacy ENV k v).
func envOf(in instruction) map[string]string {
	env := map[string]string{}
	if k, v, ok := strings.Cut(in.args, " "); ok && !strings.Contains(k, "=") {
		env[k] = strings.Trim(v, `"`)
		return env
	}
	for _, kv := range strings.Fields(in.args) {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = strings.Trim(v, `"`)
		}
	}
	return env
}

// copyOf splits a COPY instruction into its --flags (name → value) and its
// sources and destination.
func copyOf(in instruction) (flags map[string]string, srcs []string, dst string) {
	flags = map[string]string{}
	fields := strings.Fields(in.args)
	for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
		k, v, _ := strings.Cut(strings.TrimPrefix(fields[0], "--"), "=")
		flags[k] = v
		fields = fields[1:]
	}
	if len(fields) < 2 {
		return flags, nil, ""
	}
	return flags, fields[:len(fields)-1], fields[len(fields)-1]
}

// TestDockerfile checks, without a container engine, the properties of the
// image that operators rely on: a static binary on a shell-less base, a
// non-root user that can write its database in the /data volume, and the
// port the bot listens on.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t)
	final := stages[len(stages)-1]
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stage, want a builder stage and a final stage", len(stages))
	}
	builders := stages[:len(stages)-1]

	// The go build in a builder stage, and where it writes the binary.
	var (
		build    instruction
		buildSt  stage
		buildOut string
	)
	for _, s := range builders {
		for _, in := range s.all("RUN") {
			if strings.Contains(in.args, "go build") {
				build, buildSt = in, s
			}
		}
	}
	if m := regexp.MustCompile(`-o\s+(\S+)`).FindStringSubmatch(build.args); m != nil {
		buildOut = m[1]
	}

	// The final stage's user, resolved to a uid.
	var user string
	if users := final.all("USER"); len(users) > 0 {
		user = users[len(users)-1].args
	}
	uid, _, _ := strings.Cut(user, ":")
	if uid == "nonroot" {
		uid = nonrootUID
	}

	env := map[string]string{}
	for _, in := range final.all("ENV") {
		for k, v := range envOf(in) {
			env[k] = v
		}
	}

	t.Run("builder builds ./cmd/bot statically", func(t *testing.T) {
		if build.cmd == "" {
			t.Fatal("no builder stage runs go build")
		}
		if !strings.HasPrefix(buildSt.image, "golang:") {
			t.Errorf("builder stage is FROM %s, want a golang image", buildSt.image)
		}
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/bot"} {
			if !strings.Contains(build.args, want) {
				t.Errorf("Dockerfile:%d: %q lacks %s", build.line, build, want)
			}
		}
		if buildOut == "" {
			t.Errorf("Dockerfile:%d: go build has no -o", build.line)
		}
	})

	t.Run("modules download in their own layer", func(t *testing.T) {
		// Copying only go.mod and go.sum before go mod download lets Docker
		// reuse the module layer until they change.
		var copiedMod, downloaded bool
		for _, in := range buildSt.body {
			switch {
			case in.cmd == "COPY" && !copiedMod:
				_, srcs, _ := copyOf(in)
				if !slices.Equal(srcs, []string{"go.mod", "go.sum"}) {
					t.Fatalf("Dockerfile:%d: first COPY of the builder is %q, want go.mod go.sum alone", in.line, in)
				}
				copiedMod = true
			case in.cmd == "RUN" && strings.Contains(in.args, "go mod download"):
				downloaded = true
			case in.cmd == "COPY" && !downloaded:
				t.Fatalf("Dockerfile:%d: %q comes before go mod download", in.line, in)
			}
		}
		if !copiedMod || !downloaded {
			t.Error("builder stage does not COPY go.mod go.sum then RUN go mod download")
		}
	})

	t.Run("final stage has no shell", func(t *testing.T) {
		if !strings.HasPrefix(final.image, "gcr.io/distroless/static") && final.image != "scratch" {
			t.Errorf("final stage is FROM %s, want gcr.io/distroless/static… or scratch", final.image)
		}
		// Without a shell, a shell-form HEALTHCHECK fails on every probe.
		for _, in := range final.all("HEALTHCHECK") {
			if in.args != "NONE" && !strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(commandOf(in.args), "CMD")), "[") {
				t.Errorf("Dockerfile:%d: %q is shell form; the final image has no shell", in.line, in)
			}
		}
	})

	t.Run("runs as non-root", func(t *testing.T) {
		switch uid {
		case "":
			t.Error("final stage sets no USER")
		case "root", "0":
			t.Errorf("final stage runs as USER %s", user)
		}
	})

	t.Run("runs the built binary", func(t *testing.T) {
		var binary string
		for _, in := range final.all("COPY") {
			flags, srcs, dst := copyOf(in)
			if flags["from"] == buildSt.name && slices.Contains(srcs, buildOut) {
				binary = dst
			}
		}
		if binary == "" {
			t.Fatalf("final stage does not COPY --from=%s %s", buildSt.name, buildOut)
		}
		eps := final.all("ENTRYPOINT")
		if len(eps) == 0 {
			t.Fatal("final stage has no ENTRYPOINT")
		}
		var argv []string
		if err := json.Unmarshal([]byte(eps[len(eps)-1].args), &argv); err != nil || len(argv) == 0 {
			t.Fatalf("ENTRYPOINT %s is not exec form (JSON array): there is no shell to run it", eps[len(eps)-1].args)
		}
		if argv[0] != binary {
			t.Errorf("ENTRYPOINT runs %s, want the built binary %s", argv[0], binary)
		}
	})

	t.Run("database lives in a /data volume the user owns", func(t *testing.T) {
		var volumes []string
		for _, in := range final.all("VOLUME") {
			var list []string
			if json.Unmarshal([]byte(in.args), &list) != nil {
				list = strings.Fields(in.args)
			}
			volumes = append(volumes, list...)
		}
		if !slices.Contains(volumes, "/data") {
			t.Errorf("final stage VOLUME %q, want /data", volumes)
		}
		if db := env["ROLEGATE_DB"]; path.Dir(db) != "/data" {
			t.Errorf("ENV ROLEGATE_DB=%q, want a file in /data", db)
		}
		// The base image has no /data; created by a Docker volume it would be
		// root's, and bbolt could not create its file as nonroot.
		var owner string
		for _, in := range final.all("COPY") {
			if flags, _, dst := copyOf(in); path.Clean(dst) == "/data" {
				owner = flags["chown"]
			}
		}
		if o, _, _ := strings.Cut(owner, ":"); o != uid || uid == "" {
			t.Errorf("/data is created with --chown=%q, want it owned by the USER (%s)", owner, user)
		}
	})

	t.Run("exposes the listen port", func(t *testing.T) {
		addr, ok := env["ROLEGATE_ADDR"]
		if !ok {
			addr = ":" + defaultPort
		}
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("ENV ROLEGATE_ADDR=%q: %v", addr, err)
		}
		if port != defaultPort {
			t.Errorf("ROLEGATE_ADDR port %s, want the default %s", port, defaultPort)
		}
		var exposed []string
		for _, in := range final.all("EXPOSE") {
			for _, p := range strings.Fields(in.args) {
				exposed = append(exposed, strings.TrimSuffix(p, "/tcp"))
			}
		}
		if !slices.Contains(exposed, port) {
			t.Errorf("EXPOSE %q, want the ROLEGATE_ADDR port %s", exposed, port)
		}
	})
}

// commandOf strips HEALTHCHECK options (--interval=… and the like).
func commandOf(args string) string {
	fields := strings.Fields(args)
	for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
		fields = fields[1:]
	}
	return strings.Join(fields, " ")
}

// TestDockerignore checks that the build context keeps what go build needs and
// leaves out the repository's history, local databases and secrets.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(moduleRoot(t), ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for line := range strings.Lines(string(data)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}

	tests := []struct {
		path    string
		ignored bool
	}{
		{".git/HEAD", true},
		{"rolegate.db", true},
		{"data/rolegate.db", true},
		{".env", true},
		{"go.mod", false},
		{"go.sum", false},
		{"cmd/bot/main.go", false},
		{"internal/approvals/store.go", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if got := dockerIgnored(t, patterns, tt.path); got != tt.ignored {
				t.Errorf("%s ignored = %v, want %v", tt.path, got, tt.ignored)
			}
		})
	}
}

// dockerIgnored reports whether .dockerignore patterns exclude name (a slash
// path relative to the context) the way Docker reads them: the last matching
// pattern wins, ! re-includes, a match on a directory excludes what is in
// it, * and ? stop at slashes, ** spans them.
func dockerIgnored(t testing.TB, patterns []string, name string) bool {
	t.Helper()
	ignored := false
	for _, p := range patterns {
		negate := strings.HasPrefix(p, "!")
		p = path.Clean(strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/"))
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch {
			case strings.HasPrefix(p[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(p[i:], "**"):
				re.WriteString(".*")
				i++
			case p[i] == '*':
				re.WriteString("[^/]*")
			case p[i] == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(p[i : i+1]))
			}
		}
		re.WriteString("(/.*)?$")
		m, err := regexp.Compile(re.String())
		if err != nil {
			t.Fatalf(".dockerignore pattern %q: %v", p, err)
		}
		if m.MatchString(name) {
			ignored = !negate
		}
	}
	return ignored
}

// TestStaticBuild builds ./cmd/bot as the Dockerfile does and checks the
// result is a static Linux executable: distroless/static has no libc or
// dynamic loader, so a dynamic binary would not start there.
func TestStaticBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bot; skipped with -short")
	}
	root := moduleRoot(t)
	if !hasGoFiles(t, filepath.Join(root, "cmd", "bot")) {
		t.Skip("cmd/bot has no Go files yet: nothing to build")
	}

	out := filepath.Join(t.TempDir(), "bot")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/bot")
	cmd.Dir = root
	// Always linux, as in the image; the host's architecture keeps the build
	// cache warm between runs.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	began := time.Now()
	if output, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build ./cmd/bot: %v\n%s", err, output)
	}
	t.Logf("built in %v", time.Since(began).Round(time.Millisecond))

	f, err := elf.Open(out)
	if err != nil {
		t.Fatalf("built binary is not ELF: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			t.Error("binary has a PT_INTERP header: it needs a dynamic loader the image lacks")
		case elf.PT_DYNAMIC:
			t.Error("binary has a PT_DYNAMIC header: it is dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil {
		t.Errorf("read imported libraries: %v", err)
	} else if len(libs) > 0 {
		t.Errorf("binary needs shared libraries %q", libs)
	}
}

// hasGoFiles reports whether dir holds a non-test Go file.
func hasGoFiles(t testing.TB, dir string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n := e.Name(); !e.IsDir() && strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			return true
		}
	}
	return false
}
