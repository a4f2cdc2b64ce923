package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/rolegate/rolegate/internal/openai/openaitest"
)

// The check phases time what a new request goes through before approvers
// see it: stored `checking` before the ack, then the worker resolves the
// names through the cached catalog, lists the group's roles at OpenAI (the
// uncached freshness check) and only then posts the approval message. They
// run against a fake OpenAI that answers every call in -openai-delay, so the
// catalog's cache and its single flight on a cold miss are what the figures
// show, not loopback's speed.
//
// Each phase gets a fresh bot with its own fakes and database: the catalog
// lives in the bot's memory, so only a new process starts cold; and request
// ids start at 1 in every database, so a second bot must not share the
// first one's tracker or the fake's call counters.

// catalogOps are the list calls CachedCatalog caches. The list of a group's
// roles (openaitest.OpListGroupRoles) is not among them: it is asked every
// time, and counted apart.
var catalogOps = []openaitest.Op{openaitest.OpListProjects, openaitest.OpListGroups, openaitest.OpListProjectRoles}

// approvalWait bounds the wait for a burst's approval messages once every
// command was answered. A request whose checks failed never gets one.
const approvalWait = 2 * time.Minute

// measureChecks runs the check phases: a cold burst of C requests on a fresh
// bot and a warm burst of C right after, timing command → approval message
// posted; then a burst of N on another fresh bot, counting the list calls
// the catalog makes.
func measureChecks(ctx context.Context, o *options, bin, dir string, progress func(string, ...any)) (figures, error) {
	figs := figures{}
	progress("checks: fresh bot, fake OpenAI answering in %s: a cold burst of %d, then a warm one, %d in flight", o.openAIDelay, o.c, o.c)
	l, err := startCheckBot(ctx, o, bin, dir, "checks-bursts", 2*o.c)
	if err != nil {
		return nil, err
	}
	cold, err := l.checkedBurst(ctx, o.c)
	var warm burstResult
	warmLists := 0
	if err == nil {
		before := callCounts(l.f.openai)
		warm, err = l.checkedBurst(ctx, o.c)
		after := callCounts(l.f.openai)
		for _, op := range catalogOps {
			warmLists += after[op] - before[op]
		}
	}
	if err := errors.Join(err, l.stop()); err != nil {
		return nil, err
	}
	putLatency(figs, "checks_cold_command_ack", cold.ack)
	putLatency(figs, "checks_cold_approval", cold.approval)
	putLatency(figs, "checks_warm_command_ack", warm.ack)
	putLatency(figs, "checks_warm_approval", warm.approval)
	figs["checks_warm_list_calls"] = float64(warmLists)

	progress("checks: fresh bot, a burst of %d, %d in flight: catalog list calls", o.n, o.c)
	if l, err = startCheckBot(ctx, o, bin, dir, "checks-lists", o.n); err != nil {
		return nil, err
	}
	before := callCounts(l.f.openai)
	burst, err := l.checkedBurst(ctx, o.n)
	after := callCounts(l.f.openai)
	if err := errors.Join(err, l.stop()); err != nil {
		return nil, err
	}
	putLatency(figs, "checks_burst_approval", burst.approval)
	lists := 0
	for _, op := range catalogOps {
		calls := after[op] - before[op]
		lists += calls
		figs["checks_"+strings.ReplaceAll(string(op), "-", "_")+"_calls"] = float64(calls)
	}
	figs["checks_list_calls_per_request"] = float64(lists) / float64(o.n)
	groupRoles := after[openaitest.OpListGroupRoles] - before[openaitest.OpListGroupRoles]
	figs["checks_group_role_checks_per_request"] = float64(groupRoles) / float64(o.n)
	return figs, nil
}

// callCounts reads the fake's counters of the catalog's lists and of the
// group-role checks.
func callCounts(s *openaitest.Server) map[openaitest.Op]int {
	counts := map[openaitest.Op]int{}
	for _, op := range append(catalogOps, openaitest.OpListGroupRoles) {
		counts[op] = s.Calls(op)
	}
	return counts
}

// startCheckBot starts fakes whose OpenAI answers in o.openAIDelay and a
// fresh bot against them, with a new database named after name in dir. The
// fake holds the groups of all the requests the bot will be sent before
// the bot starts: a group added later is missing from the cached list, and
// the checks would resolve it again uncached, measuring a group created a
// moment ago rather than the cache (in a first try, 72 of a warm burst's
// 100 requests did so, three times slower than the cold burst). The caller
// stops the bot with load.stop.
func startCheckBot(ctx context.Context, o *options, bin, dir, name string, requests int) (*load, error) {
	f, err := startFakes(loadBotToken, loadAdminKey)
	if err != nil {
		return nil, err
	}
	f.ensureTargets(requests)
	f.openai.SetDelay(o.openAIDelay)
	b, err := startBot(bin, botEnv(o, f, filepath.Join(dir, name+".db")), filepath.Join(dir, name+".log"))
	if err != nil {
		f.close()
		return nil, err
	}
	if _, err := b.waitHealthy(ctx, 10*time.Second); err != nil {
		b.stop()
		f.close()
		return nil, err
	}
	return newLoad(o, f, b), nil
}

// stop stops the bots of a load (as started by startCheckBot) and its fakes.
func (l *load) stop() error {
	l.closePosters()
	var errs []error
	for _, b := range l.bots {
		errs = append(errs, b.stop())
	}
	l.f.close()
	return errors.Join(errs...)
}

// burstResult is what one checked burst measured.
type burstResult struct {
	ack      latency // command sent → the bot's answer
	approval latency // command sent → the approval message's chat.postMessage at the fake Slack
}

// checkedBurst sends n requests (C in flight) that name the project and the
// role by name, in quotes and in another case than the catalog's, and the
// group by id, so every check resolves names; then it waits until each
// request's approval message was posted, that is until its checks passed.
// Nothing is approved: the requests stay pending.
func (l *load) checkedBurst(ctx context.Context, n int) (burstResult, error) {
	var res burstResult
	first := l.total
	l.f.ensureTargets(first + n)
	project, ok := l.f.openai.Project(loadProject)
	if !ok {
		return res, fmt.Errorf("the fake OpenAI lacks project %s", loadProject)
	}
	ids := make([]uint64, n)
	sent := make([]time.Time, n)
	var errs errorList
	acks := runPhase(ctx, n, l.o.c, func(i int) time.Duration {
		group, role := target(first + i)
		text := fmt.Sprintf("%q %s %q checked load request %d for key rotation",
			strings.ToLower(project.Name), group, strings.ToLower(loadRoleName(role)), first+i)
		body := l.sg.command(requester(first+i), text)
		sent[i] = time.Now()
		id, d, err := l.command(ctx, first+i, body)
		if err != nil {
			errs.add("command: %v", err)
			return d
		}
		ids[i] = id
		return d
	})
	if err := errs.err(); err != nil {
		return res, err
	}
	l.total += n
	res.ack = acks.lat

	wctx, cancel := context.WithTimeout(ctx, approvalWait)
	defer cancel()
	var approval samples
	for i, id := range ids {
		_, at, err := l.f.track.waitApproval(wctx, id)
		if err != nil {
			return res, fmt.Errorf("%w: its checks did not pass (bot logs %s)", err, l.logs())
		}
		approval.add(at.Sub(sent[i]))
	}
	res.approval = approval.summary()
	return res, nil
}
