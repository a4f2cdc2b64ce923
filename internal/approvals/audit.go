package approvals

// The audit chain. Every event carries the hash of the event before it in
// the global sequence (Prev) and its own hash (Hash) over a canonical
// encoding of its fields and Prev, so that editing, dropping, reordering or
// inserting a stored event breaks the chain where it happened. Anyone with
// the file can recompute the whole chain, so the chain alone proves nothing
// against someone who rewrites all of it: the hashes rolegate posts in
// Slack (PostResult) are the checkpoints the database cannot forge, and
// `bot audit verify` reports the head to compare with them.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// ActionChainStarted is the event a file written before the audit chain
// gets when it is first opened by a rolegate that chains events: request
// 0, actor SystemActor, detail saying how many earlier events were chained.
const ActionChainStarted Action = "audit_chain_started"

// GenesisHash is the Prev of the first event of a chain.
const GenesisHash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

// AtLayout is how an event's time enters the canonical encoding and the
// export: RFC 3339 in UTC with exactly nine fractional digits, so that one
// instant has one spelling.
const AtLayout = "2006-01-02T15:04:05.000000000Z"

// hashPrefix starts every hash: the algorithm, named.
const hashPrefix = "sha256:"

var (
	metaChain = []byte("chain")      // present once the audit log is chained (prepare)
	metaHead  = []byte("audit_head") // 8-byte big-endian seq of the last event, then its hash
)

// ChainHash returns e's hash: "sha256:" and the lowercase hex SHA-256 of
// its canonical encoding, which is seven netstrings, one per field in this
// order:
//
//	seq, request_id, actor, action, at, detail, prev
//
// each written as the field's length in bytes (decimal), ":", the field's
// UTF-8 bytes, and ",". seq and request_id are decimal without leading
// zeros; at is formatted with AtLayout (e.g. 2025-01-02T03:04:05.060000000Z);
// prev is the previous event's hash (GenesisHash for the first). For
// example the event {seq 1, request 7, actor U1, action create, detail
// "hi"} at 2025-01-02T03:04:05Z is hashed over
//
//	1:1,1:7,2:U1,6:create,30:2025-01-02T03:04:05.000000000Z,2:hi,71:sha256:000…000,
//
// Every field of an exported line (EventLine) is the exact string that is
// hashed, so a verifier needs no time or JSON rules of its own.
func ChainHash(e Event) string {
	var buf [512]byte
	sum := sha256.Sum256(canonical(buf[:0], e))
	out := make([]byte, len(hashPrefix)+hex.EncodedLen(len(sum)))
	copy(out, hashPrefix)
	hex.Encode(out[len(hashPrefix):], sum[:])
	return string(out)
}

// canonical appends e's canonical encoding (see ChainHash) to buf.
func canonical(buf []byte, e Event) []byte {
	var num [20]byte
	var at [40]byte
	buf = netstring(buf, strconv.AppendUint(num[:0], e.ID, 10))
	buf = netstring(buf, strconv.AppendUint(num[:0], e.RequestID, 10))
	buf = netstring(buf, e.Actor)
	buf = netstring(buf, e.Action)
	buf = netstring(buf, e.At.UTC().AppendFormat(at[:0], AtLayout))
	buf = netstring(buf, e.Detail)
	return netstring(buf, e.Prev)
}

// netstring appends s as a netstring: its length in bytes, ":", s, ",".
func netstring[T ~string | ~[]byte](buf []byte, s T) []byte {
	buf = strconv.AppendInt(buf, int64(len(s)), 10)
	buf = append(buf, ':')
	buf = append(buf, s...)
	return append(buf, ',')
}

// normalizeEvent makes e what it will read back as from the store: text
// as valid UTF-8 (encoding/json replaces invalid bytes the same way) and
// the time at nanosecond precision in UTC. The hash is computed over this
// form so that it verifies after a round trip.
func normalizeEvent(e *Event) {
	for _, s := range []*string{&e.Actor, &e.Detail} {
		if !utf8.ValidString(*s) {
			*s = strings.ToValidUTF8(*s, "\uFFFD")
		}
	}
	if !utf8.ValidString(string(e.Action)) {
		e.Action = Action(strings.ToValidUTF8(string(e.Action), "\uFFFD"))
	}
	e.At = fromUnixNano(unixNano(e.At))
}

// chainHead returns the seq and hash of the last chained event, or 0 and
// GenesisHash when there is none.
func chainHead(tx *bolt.Tx) (uint64, string, error) {
	v := tx.Bucket(bucketMeta).Get(metaHead)
	if v == nil {
		return 0, GenesisHash, nil
	}
	if len(v) < 8 {
		return 0, "", fmt.Errorf("the audit chain head is damaged (%d bytes)", len(v))
	}
	return btoi(v[:8]), string(v[8:]), nil
}

// link sets e's Prev and Hash from the chain head in tx and makes e the
// head. Everything comes from tx, so events written by one group commit
// chain in commit order, and a function the group commit runs again
// relinks from the rolled-back head.
func link(tx *bolt.Tx, e *Event) error {
	normalizeEvent(e)
	_, prev, err := chainHead(tx)
	if err != nil {
		return err
	}
	e.Prev = prev
	e.Hash = ChainHash(*e)
	head := make([]byte, 8, 8+len(e.Hash))
	copy(head, itob(e.ID))
	return tx.Bucket(bucketMeta).Put(metaHead, append(head, e.Hash...))
}

// startChain chains the events of a file written before the audit chain,
// once: in sequence order, then records ActionChainStarted. A file with no
// events starts chained and gets no such event. An event that cannot be
// decoded is left as it is, for VerifyChain to report.
func startChain(tx *bolt.Tx, now time.Time) error {
	meta := tx.Bucket(bucketMeta)
	if meta.Get(metaChain) != nil {
		return nil
	}
	audit := tx.Bucket(bucketAudit)
	n := 0
	c := audit.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		e, err := unmarshalEvent(v)
		if err != nil {
			continue
		}
		if err := link(tx, &e); err != nil {
			return err
		}
		nv, err := marshalEvent(e)
		if err != nil {
			return err
		}
		key := bytes.Clone(k)
		if err := audit.Put(key, nv); err != nil {
			return err
		}
		c.Seek(key) // a Put may move the cursor's page: stand on the key again
		n++
	}
	if n > 0 {
		tr := Transition{Event: Event{Actor: SystemActor, Action: ActionChainStarted,
			Detail: fmt.Sprintf("chained %d events written before the audit chain", n)}}
		if err := record(tx, &Request{}, tr, now); err != nil {
			return err
		}
	}
	return meta.Put(metaChain, itob(1))
}

// EventLine is one event as `bot audit export` writes it: a JSON object on
// a line of its own. Every string is exactly what ChainHash hashes.
type EventLine struct {
	Seq       uint64 `json:"seq"`
	RequestID uint64 `json:"request_id"`
	Actor     string `json:"actor"`
	Action    string `json:"action"`
	At        string `json:"at"`
	Detail    string `json:"detail"`
	Prev      string `json:"prev"`
	Hash      string `json:"hash"`
}

// LineOf returns e as an exported line.
func LineOf(e Event) EventLine {
	return EventLine{Seq: e.ID, RequestID: e.RequestID, Actor: e.Actor, Action: string(e.Action),
		At: e.At.UTC().Format(AtLayout), Detail: e.Detail, Prev: e.Prev, Hash: e.Hash}
}

// Event returns the event l holds. Its time must be spelled as AtLayout
// spells it, or the line's hash could not be recomputed from the text.
func (l EventLine) Event() (Event, error) {
	at, err := time.Parse(AtLayout, l.At)
	if err != nil {
		return Event{}, fmt.Errorf("event %d: at %q is not in the form %s", l.Seq, l.At, AtLayout)
	}
	return Event{ID: l.Seq, RequestID: l.RequestID, Actor: l.Actor, Action: Action(l.Action), At: at, Detail: l.Detail,
		Prev: l.Prev, Hash: l.Hash}, nil
}

// ProblemKind says how a chain is broken.
type ProblemKind string

// The ways VerifyEvents finds a chain broken.
const (
	// ProblemEdited: the event's hash does not match its content.
	ProblemEdited ProblemKind = "edited"
	// ProblemDropped: the event is missing (the sequence skips it), or the
	// log ends before the head the store recorded.
	ProblemDropped ProblemKind = "dropped"
	// ProblemReordered: the event comes after a later one.
	ProblemReordered ProblemKind = "reordered"
	// ProblemInserted: the sequence number appears a second time.
	ProblemInserted ProblemKind = "inserted"
	// ProblemUnlinked: the event's Prev is not the previous event's hash:
	// the previous event was replaced, or this one inserted in its place.
	ProblemUnlinked ProblemKind = "unlinked"
	// ProblemUnchained: the event has no hash (written before the chain and
	// never upgraded).
	ProblemUnchained ProblemKind = "unchained"
	// ProblemUnreadable: the stored event cannot be decoded.
	ProblemUnreadable ProblemKind = "unreadable"
)

// ChainProblem is the first place a chain is broken: the sequence number of
// the bad (or missing) event and what is wrong with it.
type ChainProblem struct {
	Seq    uint64
	Kind   ProblemKind
	Detail string
}

func (p *ChainProblem) Error() string {
	return fmt.Sprintf("event %d %s: %s", p.Seq, p.Kind, p.Detail)
}

// VerifyResult is what VerifyEvents and VerifyChain found.
type VerifyResult struct {
	// Events is how many events were checked.
	Events int
	// First is the first event's seq and FirstPrev its Prev: where a
	// partial log hooks into the full one.
	First     uint64
	FirstPrev string
	// HeadSeq and Head are the last intact event's seq and hash (0 and
	// GenesisHash when there is none): compare Head with the hashes
	// rolegate posted in Slack.
	HeadSeq uint64
	Head    string
	// Problem is the first break found, nil when the chain is intact.
	Problem *ChainProblem
}

// Intact reports whether no problem was found.
func (r VerifyResult) Intact() bool { return r.Problem == nil }

// VerifyOptions says where a run of events must start.
type VerifyOptions struct {
	// Partial accepts a run that starts anywhere (an export made with
	// --since), taking the first event's seq and Prev on trust. Otherwise
	// the run must start at event 1 with GenesisHash.
	Partial bool
}

// VerifyEvents checks a run of events in the order given: every hash
// recomputed, every Prev the previous event's hash, every seq one more than
// the last. It keeps a constant amount of state. It returns the first
// problem in the result; its error is only events' own (a read error),
// except that a *CorruptError of kind "event" is reported as an unreadable
// event. After a gap in the sequence it reads on to the end to tell a
// dropped event from a reordered one.
func VerifyEvents(events iter.Seq2[Event, error], opt VerifyOptions) (VerifyResult, error) {
	res := VerifyResult{Head: GenesisHash}
	started := false
	var gap *ChainProblem // a seq skipped: dropped, unless it shows up later
	var gapAt uint64      // the event found in the skipped one's place
	var buf []byte
	for e, err := range events {
		if err != nil {
			var ce *CorruptError
			if errors.As(err, &ce) && ce.Kind == "event" && gap == nil {
				res.Problem = &ChainProblem{Seq: ce.Key, Kind: ProblemUnreadable, Detail: ce.Err.Error()}
				return res, nil
			}
			if gap != nil && errors.As(err, &ce) {
				continue
			}
			return res, err
		}
		if gap != nil {
			if e.ID == gap.Seq {
				res.Problem = &ChainProblem{Seq: e.ID, Kind: ProblemReordered,
					Detail: fmt.Sprintf("it comes after event %d, not after event %d", gapAt, e.ID-1)}
				return res, nil
			}
			continue
		}
		if !started {
			started = true
			res.First, res.FirstPrev = e.ID, e.Prev
			if opt.Partial && e.ID > 0 {
				res.HeadSeq, res.Head = e.ID-1, e.Prev
			}
		}
		want := res.HeadSeq + 1
		switch {
		case e.ID > want:
			gap = &ChainProblem{Seq: want, Kind: ProblemDropped,
				Detail: fmt.Sprintf("the sequence jumps from event %d to event %d", res.HeadSeq, e.ID)}
			gapAt = e.ID
			continue
		case e.ID < want:
			res.Problem = &ChainProblem{Seq: e.ID, Kind: ProblemInserted,
				Detail: fmt.Sprintf("sequence number %d appears again after event %d", e.ID, res.HeadSeq)}
			return res, nil
		case e.Hash == "":
			res.Problem = &ChainProblem{Seq: e.ID, Kind: ProblemUnchained,
				Detail: "it has no hash (written before the audit chain: open the file with the bot once to chain it)"}
			return res, nil
		}
		buf = canonical(buf[:0], e)
		sum := sha256.Sum256(buf)
		if !hashIs(e.Hash, sum) {
			res.Problem = &ChainProblem{Seq: e.ID, Kind: ProblemEdited,
				Detail: fmt.Sprintf("its content does not match its hash %s (recomputed %s%x)", e.Hash, hashPrefix, sum)}
			return res, nil
		}
		if e.Prev != res.Head {
			res.Problem = &ChainProblem{Seq: e.ID, Kind: ProblemUnlinked,
				Detail: fmt.Sprintf("its prev %s is not the hash of event %d (%s): that event was replaced, or this one inserted", e.Prev, res.HeadSeq, res.Head)}
			return res, nil
		}
		res.Events++
		res.HeadSeq, res.Head = e.ID, e.Hash
	}
	if gap != nil {
		res.Problem = gap
	}
	return res, nil
}

// hashIs reports whether h spells sum as ChainHash does, without
// allocating.
func hashIs(h string, sum [sha256.Size]byte) bool {
	if len(h) != len(hashPrefix)+2*sha256.Size || h[:len(hashPrefix)] != hashPrefix {
		return false
	}
	const digits = "0123456789abcdef"
	for i, b := range sum {
		j := len(hashPrefix) + 2*i
		if h[j] != digits[b>>4] || h[j+1] != digits[b&0xf] {
			return false
		}
	}
	return true
}

// storedEvents iterates the audit bucket in key order. An event that
// cannot be decoded comes as a *CorruptError of kind "event".
func storedEvents(ctx context.Context, tx *bolt.Tx, from []byte) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		c := tx.Bucket(bucketAudit).Cursor()
		n := 0
		for k, v := c.Seek(from); k != nil; k, v = c.Next() {
			if n++; n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					yield(Event{}, err)
					return
				}
			}
			e, err := unmarshalEvent(v)
			if err != nil {
				err = &CorruptError{Kind: "event", Key: btoi(k), Err: err}
			}
			if !yield(e, err) {
				return
			}
		}
	}
}

// ForEachEvent calls fn with every stored event in sequence order, from the
// first one at or after since (zero: from the first) to the last: a
// contiguous run, so that it verifies on its own from its first event's
// Prev. It reads in one read transaction and holds one event at a time.
// It stops at fn's first error and returns it; an event that cannot be
// decoded is a *CorruptError.
func (s *BoltStore) ForEachEvent(ctx context.Context, since time.Time, fn func(Event) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		started := since.IsZero()
		for e, err := range storedEvents(ctx, tx, nil) {
			if err != nil {
				return err
			}
			if !started {
				if e.At.Before(since) {
					continue
				}
				started = true
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
}

// VerifyChain checks the stored audit chain from event 1 (see
// VerifyEvents), and that it ends at the head recorded with the last
// write, which catches events dropped from the end. Its error is a read
// failure; a broken chain is VerifyResult.Problem.
func (s *BoltStore) VerifyChain(ctx context.Context) (VerifyResult, error) {
	var res VerifyResult
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		res, err = VerifyEvents(storedEvents(ctx, tx, nil), VerifyOptions{})
		if err != nil || res.Problem != nil {
			return err
		}
		seq, head, err := chainHead(tx)
		if err != nil {
			return err
		}
		if tx.Bucket(bucketMeta).Get(metaHead) == nil {
			seq, head = 0, GenesisHash
		}
		res.CheckHead(seq, head)
		return nil
	})
	return res, err
}

// CheckHead compares the end of an intact run verified from event 1 with
// the head (seq, head) the store recorded with its last write, and sets
// r.Problem when they differ: events dropped from the end, added after it,
// or the last one replaced. Every engine's VerifyChain ends with it.
func (r *VerifyResult) CheckHead(seq uint64, head string) {
	if r.Problem != nil {
		return
	}
	switch {
	case seq > r.HeadSeq:
		r.Problem = &ChainProblem{Seq: r.HeadSeq + 1, Kind: ProblemDropped,
			Detail: fmt.Sprintf("the log ends at event %d, but rolegate last wrote event %d (%s)", r.HeadSeq, seq, head)}
	case seq < r.HeadSeq:
		r.Problem = &ChainProblem{Seq: seq + 1, Kind: ProblemInserted,
			Detail: fmt.Sprintf("rolegate last wrote event %d (%s), but the log goes on to event %d", seq, head, r.HeadSeq)}
	case head != r.Head:
		r.Problem = &ChainProblem{Seq: seq, Kind: ProblemEdited,
			Detail: fmt.Sprintf("its hash %s is not the %s rolegate recorded when it wrote it", r.Head, head)}
	}
}

// decodeLine decodes one exported line.
func decodeLine(line []byte) (Event, error) {
	var l EventLine
	if err := json.Unmarshal(line, &l); err != nil {
		return Event{}, err
	}
	return l.Event()
}

// ExportedEvents iterates the JSON lines of an export (EventLine), for
// VerifyEvents. A line that is not an event stops the iteration with an
// error naming its line number.
func ExportedEvents(lines iter.Seq2[[]byte, error]) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		n := 0
		for line, err := range lines {
			n++
			if err != nil {
				yield(Event{}, err)
				return
			}
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			e, err := decodeLine(line)
			if err != nil {
				yield(Event{}, fmt.Errorf("line %d is not an audit event: %w", n, err))
				return
			}
			if !yield(e, nil) {
				return
			}
		}
	}
}
