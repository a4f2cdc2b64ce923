// Package manifest holds no code, only tests for the files that deploy
// rolegate: the Slack app manifests (manifest.yml for Socket Mode,
// deploy/manifest-http.yml for HTTP mode), checked against Slack's published
// manifest JSON Schema and against what the bot expects of them; and the
// Dockerfile and .dockerignore, checked without a container engine, together
// with a static build of ./cmd/bot like the one the image runs.
package manifest
