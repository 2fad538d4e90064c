-- Signed checkpoints of every chain head (see domain/checkpoint.rs): append-only.
-- The serving role may only SELECT and INSERT them (roles.rs); the triggers
-- stop the owner's accidental UPDATE, DELETE or TRUNCATE as well.
CREATE TABLE audit_checkpoints (
    checkpoint_id uuid        PRIMARY KEY,
    created_at    timestamptz NOT NULL,
    summary       text        NOT NULL,
    heads         text        NOT NULL
);

CREATE INDEX audit_checkpoints_by_time ON audit_checkpoints (created_at DESC, checkpoint_id DESC);

CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'checkpoints are append-only' USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only();

CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoints_append_only();
