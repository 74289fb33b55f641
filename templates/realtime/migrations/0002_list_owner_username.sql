-- The owner's username on each list, so members see who shares it with them (users are never
-- synced). Filled in by the server on every list write (server/src/upload/authorize.rs).
ALTER TABLE lists ADD COLUMN owner_username text;
UPDATE lists SET owner_username = users.username FROM users WHERE users.id = lists.owner_id;
