package manifest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// TestComposeRunsTwoReplicasOnPostgres checks deploy/compose.yml, which no
// machine here can run (no Docker engine), for what README's "Several
// replicas" promises of it: PostgreSQL with a health check the replicas
// wait for, at least two replicas of the one image built from this
// repository, each on the database (no bbolt volume) with the settings
// rolegate needs, and an HTTP-mode load balancer whose health check is
// /readyz on every replica.
func TestComposeRunsTwoReplicasOnPostgres(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(moduleRoot(t), "deploy", "compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	type service struct {
		Image       string            `yaml:"image"`
		Build       string            `yaml:"build"`
		Profiles    []string          `yaml:"profiles"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		DependsOn   yaml.Node         `yaml:"depends_on"` // a list or a map of conditions
		Healthcheck *struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	}
	var doc struct {
		Services map[string]yaml.Node `yaml:"services"`
		Configs  map[string]struct {
			Content string `yaml:"content"`
		} `yaml:"configs"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("compose.yml: %v", err)
	}
	services := map[string]service{}
	for name, node := range doc.Services {
		var s service
		// Decoding the node resolves the x-rolegate anchor merged in (<<).
		if err := node.Decode(&s); err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		services[name] = s
	}
	pg, ok := services["postgres"]
	if !ok || !strings.HasPrefix(pg.Image, "postgres:") || pg.Healthcheck == nil {
		t.Fatalf("no postgres service with an image and a health check: %+v", pg)
	}
	var replicas []string
	for name, s := range services {
		if !strings.HasPrefix(name, "rolegate-") {
			continue
		}
		replicas = append(replicas, name)
		if s.Build != ".." || s.Image != "rolegate" {
			t.Errorf("%s builds %q as %q, want this repository (..) as rolegate, the image the file's migrate-store line runs", name, s.Build, s.Image)
		}
		var deps map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := s.DependsOn.Decode(&deps); err != nil || deps["postgres"].Condition != "service_healthy" {
			t.Errorf("%s does not wait for a healthy postgres", name)
		}
		url := s.Environment["ROLEGATE_DATABASE_URL"]
		if !strings.HasPrefix(url, "postgres://") || !strings.Contains(url, "@postgres:5432/") {
			t.Errorf("%s: ROLEGATE_DATABASE_URL %q does not name the postgres service", name, url)
		}
		for _, k := range []string{"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "OPENAI_ADMIN_KEY", "ROLEGATE_APPROVERS", "ROLEGATE_POLICY"} {
			if _, ok := s.Environment[k]; !ok {
				t.Errorf("%s does not pass %s through", name, k)
			}
		}
		if s.Environment["ROLEGATE_ADDR"] != ":"+defaultPort {
			t.Errorf("%s listens on %q, want :%s (the load balancer's target)", name, s.Environment["ROLEGATE_ADDR"], defaultPort)
		}
		if len(s.Volumes) > 0 {
			t.Errorf("%s mounts %v: a replica on PostgreSQL keeps no file", name, s.Volumes)
		}
	}
	if len(replicas) < 2 {
		t.Fatalf("replicas %v, want at least two", replicas)
	}
	caddy := doc.Configs["caddyfile"].Content
	for _, r := range replicas {
		if !strings.Contains(caddy, r+":"+defaultPort) {
			t.Errorf("the load balancer does not send to %s", r)
		}
	}
	if !strings.Contains(caddy, "health_uri /readyz") {
		t.Error("the load balancer does not check /readyz")
	}
	if lb := doc.Services["lb"]; lb.Kind == 0 || !strings.Contains(string(data), `profiles: ["http"]`) {
		t.Error("no load balancer under the http profile")
	}
}
