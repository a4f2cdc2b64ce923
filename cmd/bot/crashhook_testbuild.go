//go:build rolegate_crashhook && unix

package main

import (
	"net/http"
	"os"
	"syscall"
)

// TEST ONLY. This file is compiled only with -tags rolegate_crashhook, which
// crash_test.go passes when it builds the bot to SIGKILL it at precise
// points; a normal `go build` leaves it out (see crashhook.go).
//
// ROLEGATE_TEST_CRASH_AT names the point:
//
//	command_answer  the process kills itself when a slash command's answer
//	                is about to be written: the request is already stored,
//	                Slack never hears back.
//
// The other crash points need no help from the bot: the crash test kills it
// from the fakes' hooks (openaitest.OnServed, slackfake.OnCall).
func crashHook(h http.Handler) http.Handler {
	if os.Getenv("ROLEGATE_TEST_CRASH_AT") != "command_answer" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slack/commands" {
			w = killOnAnswer{w}
		}
		h.ServeHTTP(w, r)
	})
}

// killOnAnswer SIGKILLs the process before the first byte of an answer.
type killOnAnswer struct{ http.ResponseWriter }

func (k killOnAnswer) WriteHeader(int)           { die() }
func (k killOnAnswer) Write([]byte) (int, error) { die(); return 0, nil }

func die() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way; write nothing meanwhile
}
