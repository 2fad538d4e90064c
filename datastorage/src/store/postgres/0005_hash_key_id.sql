-- Which HMAC key hashed each event, so verification uses the key the row names
-- and rotating the key leaves older events verifiable. NULL for sha256 rows and
-- for keyed rows from before this column. (The immutability trigger compares
-- whole rows, so it covers this column too.)
ALTER TABLE audit_events ADD COLUMN hash_key_id text;
