-- When the first thought and the first answer text of an answer arrived, from the request
-- (milliseconds). NULL when the answer had no thinking, no answer text, or predates these.
ALTER TABLE messages ADD COLUMN first_reasoning_ms REAL;
ALTER TABLE messages ADD COLUMN first_answer_ms REAL;
