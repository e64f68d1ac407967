-- Named generation settings ("presets"), shared by the app, the CLI (--preset) and the
-- API (`preset`), and carried by history exports. One typed column per setting, as in
-- `messages`; the stop strings are a JSON array, as `messages.stop_strings`.
CREATE TABLE presets (
    name              TEXT PRIMARY KEY NOT NULL CHECK (length(trim(name)) > 0),
    system_prompt     TEXT NOT NULL DEFAULT '',
    temperature       REAL NOT NULL,
    top_k             INTEGER NOT NULL,
    top_p             REAL NOT NULL,
    min_p             REAL NOT NULL,
    repeat_penalty    REAL NOT NULL,
    repeat_last_n     INTEGER NOT NULL,
    frequency_penalty REAL NOT NULL,
    presence_penalty  REAL NOT NULL,
    seed              INTEGER,
    max_tokens        INTEGER NOT NULL,
    stop_strings      TEXT NOT NULL DEFAULT '[]',
    think_mode        TEXT NOT NULL CHECK (think_mode IN ('on', 'off', 'auto')),
    think_budget      INTEGER,
    keep_thoughts     INTEGER NOT NULL DEFAULT 0 CHECK (keep_thoughts IN (0, 1)),
    n_ctx             INTEGER NOT NULL DEFAULT 0,
    threads           INTEGER,
    template          TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
