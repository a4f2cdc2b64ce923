-- Schema version 2: the target of every request as columns, so that
-- UpdateGrant finds the other applied grants of a project, group and role
-- (bbolt's grants index) without decoding every applied request. The
-- columns are copies of the body's, kept in step by every write.

ALTER TABLE requests
    ADD COLUMN project_id text NOT NULL DEFAULT '',
    ADD COLUMN group_id   text NOT NULL DEFAULT '',
    ADD COLUMN role_id    text NOT NULL DEFAULT '';
UPDATE requests SET
    project_id = coalesce(body->>'project_id', ''),
    group_id   = coalesce(body->>'group_id', ''),
    role_id    = coalesce(body->>'role_id', '');
CREATE INDEX requests_grants ON requests (project_id, group_id, role_id, id) WHERE state = 'applied';
