-- Conclave history, base schema. Times are Unix milliseconds (UTC).
-- 'CNCL' marks the file as ours, so a foreign SQLite file is refused instead of migrated.
PRAGMA application_id = 1129202508;

CREATE TABLE conversations (
    id                TEXT PRIMARY KEY NOT NULL,
    title             TEXT NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    system_prompt     TEXT,
    think_mode        TEXT NOT NULL DEFAULT 'auto' CHECK (think_mode IN ('on', 'off', 'auto')),
    think_budget      INTEGER,
    keep_thoughts     INTEGER NOT NULL DEFAULT 0 CHECK (keep_thoughts IN (0, 1)),
    n_ctx             INTEGER,
    threads           INTEGER,
    template_override TEXT,
    default_model     TEXT,
    pinned            INTEGER NOT NULL DEFAULT 0 CHECK (pinned IN (0, 1)),
    folder            TEXT,
    -- SET NULL so deleting a branch never leaves a dangling leaf; the store re-points it.
    current_leaf_id   TEXT REFERENCES messages (id) ON DELETE SET NULL
);

CREATE INDEX conversations_by_updated ON conversations (updated_at DESC);

CREATE TABLE conversation_tags (
    conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    tag             TEXT NOT NULL,
    PRIMARY KEY (conversation_id, tag)
) WITHOUT ROWID;

CREATE INDEX conversation_tags_by_tag ON conversation_tags (tag);

-- `seq` is the rowid alias: the full-text index is keyed on it, and an explicit INTEGER
-- PRIMARY KEY keeps rowids stable across VACUUM. `id` is the public identifier.
CREATE TABLE messages (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    conversation_id   TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    -- No cascade here: a cascade recurses once per tree level and long chats are deeper
    -- than SQLite's trigger depth limit; the store deletes whole subtrees in one statement.
    parent_id         TEXT REFERENCES messages (id),
    role              TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content           TEXT NOT NULL DEFAULT '',
    reasoning         TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    status            TEXT NOT NULL DEFAULT 'complete'
                      CHECK (status IN ('streaming', 'complete', 'cancelled', 'interrupted', 'error')),
    error_message     TEXT,
    -- The model that wrote an assistant message.
    model_file        TEXT,
    model_sha256      TEXT,
    model_arch        TEXT,
    model_quant       TEXT,
    template          TEXT,
    reasoning_format  TEXT,
    -- Sampling parameters as requested; `seed` is the seed actually used.
    temperature       REAL,
    top_k             INTEGER,
    top_p             REAL,
    min_p             REAL,
    repeat_penalty    REAL,
    repeat_last_n     INTEGER,
    frequency_penalty REAL,
    presence_penalty  REAL,
    seed_requested    INTEGER,
    max_tokens        INTEGER,
    stop_strings      TEXT,   -- JSON array; shown, never queried
    seed              INTEGER,
    -- Outcome.
    stop_reason       TEXT CHECK (stop_reason IN ('eos', 'max_tokens', 'stop_string', 'cancelled', 'context_full')),
    prompt_tokens        INTEGER,
    cached_prompt_tokens INTEGER,
    completion_tokens    INTEGER,
    reasoning_tokens     INTEGER,
    answer_tokens        INTEGER,
    ttft_ms           REAL,
    prompt_eval_ms    REAL,
    prompt_tps        REAL,
    gen_ms            REAL,
    gen_tps           REAL,
    wall_ms           REAL,
    thinking_ms       REAL,
    answer_ms         REAL,
    metric_threads    INTEGER,
    peak_rss_bytes    INTEGER,
    cpu_seconds       REAL,
    energy_wh         REAL,
    energy_thinking_wh REAL,
    energy_answer_wh  REAL,
    energy_method     TEXT,
    dropped_messages  INTEGER,
    thinking          TEXT CHECK (thinking IN ('on', 'off', 'auto')),
    budget_cut_at     INTEGER,
    reasoning_cut_off INTEGER CHECK (reasoning_cut_off IN (0, 1)),
    thoughts_dropped_tokens INTEGER
);

CREATE INDEX messages_by_conversation ON messages (conversation_id, created_at);
CREATE INDEX messages_by_parent ON messages (parent_id);
CREATE INDEX messages_by_model ON messages (model_file, created_at) WHERE model_file IS NOT NULL;
-- Startup recovery looks only for answers left streaming; keep that lookup off the big table.
CREATE INDEX messages_streaming ON messages (status) WHERE status = 'streaming';
