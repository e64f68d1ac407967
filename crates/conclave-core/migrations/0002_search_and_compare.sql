-- Side-by-side runs and full-text search.

CREATE TABLE compare_runs (
    id              TEXT PRIMARY KEY NOT NULL,
    user_message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    blind           INTEGER NOT NULL DEFAULT 0 CHECK (blind IN (0, 1)),
    vote            TEXT CHECK (vote IN ('a_better', 'b_better', 'tie', 'both_bad')),
    tag             TEXT,
    created_at      INTEGER NOT NULL
);

CREATE INDEX compare_runs_by_user_message ON compare_runs (user_message_id);

ALTER TABLE messages ADD COLUMN compare_run_id TEXT REFERENCES compare_runs (id) ON DELETE SET NULL;
ALTER TABLE messages ADD COLUMN column_index INTEGER;
-- Process writing a streaming answer: at open, only answers whose writer is gone are
-- marked interrupted, so a second Conclave process never breaks a live stream.
ALTER TABLE messages ADD COLUMN writer_pid INTEGER;

CREATE INDEX messages_by_compare_run ON messages (compare_run_id) WHERE compare_run_id IS NOT NULL;

-- External-content index: the text lives once, in `messages`.
CREATE VIRTUAL TABLE messages_fts USING fts5 (
    content,
    reasoning,
    content = 'messages',
    content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, content, reasoning) VALUES (new.seq, new.content, new.reasoning);
END;

CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content, reasoning)
    VALUES ('delete', old.seq, old.content, old.reasoning);
END;

CREATE TRIGGER messages_fts_update AFTER UPDATE OF content, reasoning ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content, reasoning)
    VALUES ('delete', old.seq, old.content, old.reasoning);
    INSERT INTO messages_fts (rowid, content, reasoning) VALUES (new.seq, new.content, new.reasoning);
END;

-- Index what earlier versions stored.
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
