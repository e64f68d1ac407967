-- Where an answer's model ran when more than the CPU took part (GPU or llama.cpp RPC
-- devices), e.g. 'CPU: 11 layers, rpc 10.0.0.2:50052: 20 layers'. NULL for the CPU alone
-- and for answers that predate it.
ALTER TABLE messages ADD COLUMN devices TEXT;
