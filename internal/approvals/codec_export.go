package approvals

import (
	"cmp"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// This file lets another store engine (internal/pgstore) keep records in the
// same versioned encoding as the bbolt engine, and lets `bot migrate-store`
// read a bbolt file whole. It only wraps what codec.go and bolt.go define.

// MarshalRequest encodes r as the versioned JSON every engine stores.
func MarshalRequest(r *Request) ([]byte, error) { return marshalRequest(r) }

// UnmarshalRequest decodes a stored request. A record of an unknown schema
// version (written by a newer rolegate) or an unknown state is an error:
// the caller reports it as a *CorruptError so the Worker moves it aside.
func UnmarshalRequest(b []byte) (Request, error) { return unmarshalRequest(b) }

// MarshalEvent encodes an audit event.
func MarshalEvent(e Event) ([]byte, error) { return marshalEvent(e) }

// UnmarshalEvent decodes a stored audit event.
func UnmarshalEvent(b []byte) (Event, error) { return unmarshalEvent(b) }

// MarshalJob encodes an outbox job (its attempts, back-off and last error).
func MarshalJob(j Job) ([]byte, error) { return marshalJob(j) }

// UnmarshalJob decodes a stored job.
func UnmarshalJob(b []byte) (Job, error) { return unmarshalJob(b) }

// Normalize validates n and returns it as every engine stores it: Ask
// filled from Target, the reason trimmed. Errors wrap ErrInvalid.
func (n NewRequest) Normalize() (NewRequest, error) { return n.normalize() }

// TriggerKeep is how long an engine remembers a command's trigger id to
// recognise a replayed delivery.
const TriggerKeep = triggerKeep

// Dump is everything a bbolt file holds, read in one transaction.
type Dump struct {
	// Records are the requests, oldest first, each with its audit trail.
	Records []Record
	// Jobs is the outbox, in the order the jobs were queued.
	Jobs        []Job
	Quarantined []Quarantined
	// Orphaned are the audit events of requests no longer stored (moved
	// aside), oldest first: the audit trail keeps them.
	Orphaned []Event
	// Events counts all audit events, Orphaned included.
	Events int
	// RequestSeq and JobSeq are the last ids handed out (a request moved
	// aside keeps its id taken): a copy must continue after them.
	RequestSeq, JobSeq uint64
}

// Dump reads the whole store in one read transaction, for copying it into
// another engine. Any record it cannot decode is an error: quarantine it
// first (the bot does so as it meets them) or migrate after fixing it.
func (s *BoltStore) Dump() (Dump, error) {
	var d Dump
	err := s.db.View(func(tx *bolt.Tx) error {
		events := map[uint64][]Event{}
		d.RequestSeq, d.JobSeq = tx.Bucket(bucketRequests).Sequence(), tx.Bucket(bucketOutbox).Sequence()
		err := tx.Bucket(bucketAudit).ForEach(func(k, v []byte) error {
			e, err := unmarshalEvent(v)
			if err != nil {
				return fmt.Errorf("event %d: %w", btoi(k), err)
			}
			events[e.RequestID] = append(events[e.RequestID], e)
			d.Events++
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketRequests).ForEach(func(k, v []byte) error {
			r, err := unmarshalRequest(v)
			if err != nil {
				return &CorruptError{Kind: "request", Key: btoi(k), Err: err}
			}
			d.Records = append(d.Records, Record{Request: r, Events: events[r.ID]})
			delete(events, r.ID)
			return nil
		})
		if err != nil {
			return err
		}
		for _, evs := range events {
			d.Orphaned = append(d.Orphaned, evs...)
		}
		slices.SortFunc(d.Orphaned, func(a, b Event) int { return cmp.Compare(a.ID, b.ID) })
		for _, b := range [][]byte{bucketCalls, bucketOutbox} {
			err := tx.Bucket(b).ForEach(func(k, v []byte) error {
				j, err := unmarshalJob(v)
				if err != nil {
					return &CorruptError{Kind: "job", Key: btoi(k), Err: err}
				}
				d.Jobs = append(d.Jobs, j)
				return nil
			})
			if err != nil {
				return err
			}
		}
		slices.SortFunc(d.Jobs, func(a, b Job) int { return cmp.Compare(a.ID, b.ID) })
		return tx.Bucket(bucketQuarantine).ForEach(func(k, v []byte) error {
			q, err := unmarshalQuarantined(v)
			if err != nil {
				return fmt.Errorf("quarantined record: %w", err)
			}
			d.Quarantined = append(d.Quarantined, q)
			return nil
		})
	})
	return d, err
}

// LinkEvent chains e after the event whose hash is prev (GenesisHash for
// the first event of a chain): it puts e in the form it reads back as from
// any engine (valid UTF-8, nanosecond UTC time), sets e.Prev and sets
// e.Hash to ChainHash. e.ID must already be its place in the sequence. An
// engine calls it while it holds its chain head, as bbolt's record does.
func LinkEvent(e *Event, prev string) {
	normalizeEvent(e)
	e.Prev = prev
	e.Hash = ChainHash(*e)
}
