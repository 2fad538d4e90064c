-- Signed checkpoints of every chain head (see domain/checkpoint.rs): append-only.
CREATE TABLE audit_checkpoints (
    checkpoint_id TEXT    PRIMARY KEY NOT NULL,
    created_at    INTEGER NOT NULL,  -- microseconds since the Unix epoch
    summary       TEXT    NOT NULL,  -- JSON: id, digest, algorithm, key id, signature
    heads         TEXT    NOT NULL   -- JSON array of the heads it covers
);

CREATE INDEX audit_checkpoints_by_time ON audit_checkpoints (created_at DESC, checkpoint_id DESC);

CREATE TRIGGER audit_checkpoints_no_update
BEFORE UPDATE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'checkpoints are append-only');
END;

CREATE TRIGGER audit_checkpoints_no_delete
BEFORE DELETE ON audit_checkpoints
BEGIN
    SELECT RAISE(ABORT, 'checkpoints are append-only');
END;
