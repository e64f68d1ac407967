-- Speculative decoding: tokens drafted and verified for an answer, and how many of them the
-- model kept. NULL for answers that predate these columns; 0 and 0 when nothing was drafted.
ALTER TABLE messages ADD COLUMN drafted_tokens INTEGER;
ALTER TABLE messages ADD COLUMN accepted_tokens INTEGER;
-- A conversation's speculative mode and draft model (a GGUF path), restored with it.
-- Conversations that predate them get the default: auto, no draft model.
ALTER TABLE conversations ADD COLUMN speculative TEXT NOT NULL DEFAULT 'auto'
    CHECK (speculative IN ('off', 'auto', 'lookup', 'draft'));
ALTER TABLE conversations ADD COLUMN draft_model TEXT;
