-- rolegate's PostgreSQL schema, version 1. The request, event and job
-- bodies are the same versioned JSON the bbolt engine stores
-- (approvals.MarshalRequest etc.); the other columns are what the queries
-- filter, order and lock on, kept in step with the body in every write.

CREATE TABLE requests (
    id         bigserial   PRIMARY KEY,
    state      text        NOT NULL,
    requester  text        NOT NULL,
    channel_id text        NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    -- Request.NextWake, rounded up to the microsecond; NULL when nothing is
    -- due by time alone.
    wake_at    timestamptz,
    -- State.Open(): checking, pending or approved.
    open       boolean     NOT NULL,
    -- Bumped by every write: with SELECT ... FOR UPDATE it makes each
    -- transition a compare-and-set, and lets an operator see churn.
    version    bigint      NOT NULL DEFAULT 1,
    body       jsonb       NOT NULL
);
CREATE INDEX requests_open ON requests (requester, id) WHERE open;
CREATE INDEX requests_wake ON requests (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX requests_state ON requests (state, id);

-- The audit trail. seq is the event's id and its place in the one audit
-- chain: it is chain_head.seq + 1, taken while chain_head is locked, so seq
-- order is chain order and has no gaps.
CREATE TABLE events (
    seq        bigint      PRIMARY KEY,
    request_id bigint      NOT NULL,
    at         timestamptz NOT NULL,
    body       jsonb       NOT NULL,
    prev       bytea,
    hash       bytea
);
CREATE INDEX events_by_request ON events (request_id, seq);

-- One row: the end of the audit chain, locked (SELECT ... FOR UPDATE) by
-- every append so events are chained one after another across replicas.
CREATE TABLE chain_head (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq  bigint  NOT NULL DEFAULT 0,
    hash bytea   NOT NULL DEFAULT ''::bytea
);
INSERT INTO chain_head DEFAULT VALUES;

-- The outbox. A lane (approvals.Job.Lane) is (request_id, calls); its jobs
-- run one at a time, oldest (lowest id) first. A job handed out is leased
-- to one replica (leased_by) until leased_until.
CREATE TABLE jobs (
    id           bigserial   PRIMARY KEY,
    request_id   bigint      NOT NULL,
    kind         text        NOT NULL,
    calls        boolean     NOT NULL,
    not_before   timestamptz,
    body         jsonb       NOT NULL,
    leased_until timestamptz,
    leased_by    text
);
CREATE INDEX jobs_lane ON jobs (request_id, calls, id);
CREATE INDEX jobs_order ON jobs (calls DESC, id);

-- Trigger ids of slash commands, to recognise a replayed delivery.
CREATE TABLE triggers (
    trigger_id text        PRIMARY KEY,
    request_id bigint      NOT NULL,
    seen_at    timestamptz NOT NULL
);
CREATE INDEX triggers_seen ON triggers (seen_at);

-- Socket Mode envelope ids (and any other key) seen recently.
CREATE TABLE remembered (
    key   text        PRIMARY KEY,
    until timestamptz NOT NULL
);

-- Records that could not be read, moved aside for an operator.
CREATE TABLE quarantine (
    kind   text        NOT NULL,
    key    bigint      NOT NULL,
    reason text        NOT NULL,
    at     timestamptz NOT NULL,
    value  bytea       NOT NULL,
    PRIMARY KEY (kind, key)
);
