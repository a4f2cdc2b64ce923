//go:build !rolegate_crashhook

package main

import "net/http"

// crashHook returns h unchanged. Only the binary crash_test.go builds (with
// -tags rolegate_crashhook) can kill itself at a named point; see
// crashhook_testbuild.go. Release builds contain no such code.
func crashHook(h http.Handler) http.Handler { return h }
