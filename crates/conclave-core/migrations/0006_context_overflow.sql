-- What to leave out when a conversation no longer fits the model's context (#18): each
-- conversation keeps its policy, and each answer records the policy that shaped its
-- prompt, next to `dropped_messages`.
ALTER TABLE conversations ADD COLUMN context_overflow TEXT NOT NULL DEFAULT 'drop_oldest'
    CHECK (context_overflow IN ('stop', 'drop_oldest', 'truncate_middle'));
ALTER TABLE messages ADD COLUMN context_overflow TEXT
    CHECK (context_overflow IN ('stop', 'drop_oldest', 'truncate_middle'));
