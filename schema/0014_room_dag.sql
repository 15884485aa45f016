-- 0014: rooms whose current state was resolved from several forward extremities (events from
-- other servers) record the state group of that resolved state; NULL means "the state after
-- the newest extremity", as for rooms that only ever had local events.
ALTER TABLE rooms ADD COLUMN current_state_group INTEGER REFERENCES state_groups (id);
