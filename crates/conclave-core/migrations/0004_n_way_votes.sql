-- Votes on runs of three or four columns: "c_better", "d_better" and full rankings
-- ("rank:a>c=b>d"). SQLite cannot change a CHECK in place, so compare_runs is rebuilt.
-- sqlx runs every SQLite migration inside a transaction, where PRAGMA foreign_keys cannot
-- be switched off; dropping the old table then sets each answer's compare_run_id to NULL
-- (ON DELETE SET NULL). So the links are kept aside first and put back afterwards.
CREATE TABLE compare_runs_new (
    id              TEXT PRIMARY KEY NOT NULL,
    user_message_id TEXT NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    blind           INTEGER NOT NULL DEFAULT 0 CHECK (blind IN (0, 1)),
    vote            TEXT CHECK (
        vote IN ('a_better', 'b_better', 'c_better', 'd_better', 'tie', 'both_bad')
        OR (vote GLOB 'rank:[a-d]*' AND length(vote) <= 12)
    ),
    tag             TEXT,
    created_at      INTEGER NOT NULL
);
INSERT INTO compare_runs_new (id, user_message_id, blind, vote, tag, created_at)
    SELECT id, user_message_id, blind, vote, tag, created_at FROM compare_runs;

CREATE TEMP TABLE run_links_0004 AS
    SELECT id, compare_run_id FROM messages WHERE compare_run_id IS NOT NULL;
DROP TABLE compare_runs;
ALTER TABLE compare_runs_new RENAME TO compare_runs;
CREATE INDEX compare_runs_by_user_message ON compare_runs (user_message_id);
UPDATE messages
    SET compare_run_id = (SELECT l.compare_run_id FROM run_links_0004 l WHERE l.id = messages.id)
    WHERE id IN (SELECT id FROM run_links_0004);
DROP TABLE run_links_0004;
