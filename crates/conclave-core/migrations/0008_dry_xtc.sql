-- DRY and XTC samplers: stored with each answer and each preset, one typed column per
-- parameter, named as the parameter (history::rows reads and writes every sampling
-- parameter of settings::SAMPLING_FIELDS beyond the first eight by that name).
-- NULL in an older answer means it was generated before these existed: off.
ALTER TABLE messages ADD COLUMN dry_multiplier REAL;
ALTER TABLE messages ADD COLUMN dry_base REAL;
ALTER TABLE messages ADD COLUMN dry_allowed_length INTEGER;
ALTER TABLE messages ADD COLUMN dry_penalty_last_n INTEGER;
ALTER TABLE messages ADD COLUMN xtc_probability REAL;
ALTER TABLE messages ADD COLUMN xtc_threshold REAL;

ALTER TABLE presets ADD COLUMN dry_multiplier REAL;
ALTER TABLE presets ADD COLUMN dry_base REAL;
ALTER TABLE presets ADD COLUMN dry_allowed_length INTEGER;
ALTER TABLE presets ADD COLUMN dry_penalty_last_n INTEGER;
ALTER TABLE presets ADD COLUMN xtc_probability REAL;
ALTER TABLE presets ADD COLUMN xtc_threshold REAL;
