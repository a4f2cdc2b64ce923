package approvals

import (
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// groupCommit commits the write transactions of concurrent callers together
// without waiting for a timer: a caller that finds no commit under way
// commits at once; callers that arrive while a commit is under way queue,
// and the first of them then commits the whole queue in one transaction. A
// lone write costs one commit, and under load each fsync serves everyone
// who arrived during the previous one. bbolt's DB.Batch instead holds every
// batch for MaxBatchDelay (10ms): the profile of a 100-in-flight burst
// showed the acks and the worker spending most of their time in that wait.
//
// As with DB.Batch, a function may run more than once (when another one in
// its transaction fails, the others run again without it), so it must reset
// what it captures and change nothing outside tx.
type groupCommit struct {
	db *bolt.DB

	mu      sync.Mutex
	queue   []*commitCall
	leading bool // a caller is committing the queue, or about to
}

type commitCall struct {
	fn   func(*bolt.Tx) error
	done chan error // the outcome, or errLead
}

// errLead hands the lead to the first queued caller.
var errLead = errors.New("lead the next commit")

// update runs fn in a write transaction, committed together with the
// concurrent callers', and returns fn's error or the commit's.
func (g *groupCommit) update(fn func(*bolt.Tx) error) error {
	c := &commitCall{fn: fn, done: make(chan error, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	if !lead {
		if err := <-c.done; err != errLead {
			return err
		}
	}
	g.mu.Lock()
	calls := g.queue
	g.queue = nil
	g.mu.Unlock()
	g.run(calls)
	g.mu.Lock()
	if len(g.queue) > 0 {
		g.queue[0].done <- errLead // leading stays true: the lead passes on
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	return <-c.done
}

// run commits calls in one transaction and tells each its outcome. A call
// whose function fails is taken out and run alone, so the others still
// commit and its error is its own.
func (g *groupCommit) run(calls []*commitCall) {
	for len(calls) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bolt.Tx) error {
			for i, c := range calls {
				if err := safely(c.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, c := range calls {
				c.done <- err
			}
			return
		}
		c := calls[failed]
		calls = append(calls[:failed:failed], calls[failed+1:]...)
		c.done <- g.db.Update(func(tx *bolt.Tx) error { return safely(c.fn, tx) })
	}
}

// safely runs fn, turning a panic into an error so one caller's bug does
// not leave the others waiting forever.
func safely(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in a store transaction: %v", p)
		}
	}()
	return fn(tx)
}
