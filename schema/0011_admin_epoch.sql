-- 0011: a counter that offline admin commands (`trioserver deactivate`, `reset-password`,
-- `make-admin`) bump in the same transaction as their change. A running server polls it and,
-- when it moved, drops its in-process caches of tokens and per-user state.
CREATE TABLE admin_epoch (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    epoch  INTEGER NOT NULL
) STRICT;
INSERT INTO admin_epoch (id, epoch) VALUES (1, 0);
