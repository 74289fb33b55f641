-- The app's schema. Applied once by the process at start-up (server/src/migrations.rs);
-- never edit it after it ran anywhere: add migrations/0002_….sql instead.

-- Accounts: never synced.
CREATE TABLE users (
    id uuid PRIMARY KEY,
    username text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9_]{3,32}$'),
    password_hash text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Sign-in sessions: the SHA-256 of the cookie's token, never the token itself.
CREATE TABLE sessions (
    token_sha256 bytea PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user_id ON sessions (user_id);

-- Uploaded batches already applied, so a retried batch changes nothing (server/src/upload).
CREATE TABLE applied_uploads (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    batch_sha256 bytea NOT NULL,
    first_op_id bigint,
    last_op_id bigint,
    entries integer NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, batch_sha256)
);

-- Synced tables. Ids are uuids made by the clients, so rows can be created offline.
CREATE TABLE lists (
    id uuid PRIMARY KEY,
    owner_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lists_owner_id ON lists (owner_id);

CREATE TABLE todos (
    id uuid PRIMARY KEY,
    list_id uuid NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    description text NOT NULL,
    completed boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    created_by uuid REFERENCES users (id) ON DELETE SET NULL,
    completed_by uuid REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX todos_list_id ON todos (list_id);

CREATE TABLE list_members (
    id uuid PRIMARY KEY,
    list_id uuid NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    username text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (list_id, user_id)
);
CREATE INDEX list_members_user_id ON list_members (user_id);

-- What the sync service replicates.
CREATE PUBLICATION powersync FOR TABLE lists, todos, list_members;
