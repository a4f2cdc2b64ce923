package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// healthcheck asks the running bot's GET /healthz on ROLEGATE_ADDR, for
// container HEALTHCHECKs in an image without a shell or curl.
func healthcheck(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	addr := getenv("ROLEGATE_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		fmt.Fprintf(stdout, "unhealthy: ROLEGATE_ADDR %q is not host:port\n", addr)
		return exitError{"bad address"}
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stdout, "unhealthy: %v\n", err)
		return exitError{"unhealthy"}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stdout, "unhealthy: /healthz answered %d\n", resp.StatusCode)
		return exitError{"unhealthy"}
	}
	fmt.Fprintln(stdout, "healthy")
	return nil
}
