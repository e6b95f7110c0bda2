-- Event types are declared as data (types/<name>.toml), so the raw zone can no longer list them
-- in a CHECK, and it names each event by its type's one name — the name of its folder, its
-- table, its `--type` and its metric label — rather than the producers' `metadata.type`.
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_type_check;
UPDATE events SET type = 'users' WHERE type = 'user';
UPDATE events SET type = 'cards' WHERE type = 'card';
