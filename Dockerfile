# syntax=docker/dockerfile:1
#
# rolegate: one static binary (./cmd/bot) on a distroless base, running as
# nonroot with its bbolt database in the /data volume.
#
#   docker build -t rolegate .
#   docker run -v rolegate-data:/data -p 8080:8080 \
#     -e SLACK_BOT_TOKEN -e SLACK_APP_TOKEN -e OPENAI_ADMIN_KEY -e ROLEGATE_APPROVERS \
#     rolegate
#
# Checked without a Docker engine by internal/manifest/dockerfile_test.go.

# Build on the build host's platform and cross-compile for the target, so
# multi-platform builds (docker buildx --platform …) need no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src

# Modules first, in their own layer: it is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/bot ./cmd/bot

# The final image has no shell to mkdir with: make the data directory here and
# copy it with nonroot's uid/gid (65532), so the bot can create its database.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bot /bot
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot:nonroot
ENV ROLEGATE_DB=/data/rolegate.db ROLEGATE_ADDR=:8080
VOLUME /data
# Health, readiness and metrics are served on ROLEGATE_ADDR in both modes
# (Slack endpoints too, in HTTP mode).
EXPOSE 8080

# Health: orchestrators should probe GET /healthz (liveness: process up, database
# open) and GET /readyz (readiness: connected to Slack) on port 8080. Distroless
# has no shell or curl, so Docker's own check runs the binary, which asks /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s CMD ["/bot","healthcheck"]
ENTRYPOINT ["/bot"]
