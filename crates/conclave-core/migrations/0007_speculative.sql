-- Speculative decoding: tokens drafted and verified for an answer, and how many of them the
-- model kept. NULL for answers that predate these columns; 0 and 0 when nothing was drafted.
ALTER TABLE messages ADD COLUMN drafted_tokens INTEGER;
ALTER TABLE messages ADD COLUMN accepted_tokens INTEGER;
