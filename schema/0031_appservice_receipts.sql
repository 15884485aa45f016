-- 0031: the receipts an application service was pushed (spec "Pushing ephemeral data", for
-- registrations with receive_ephemeral), by position, as 0026 does for to-device messages.
--
-- receipts rows with stream_id <= receipts_pos were pushed (or were of no interest); a receipt
-- replaced later gets a new, higher stream_id and is pushed again. NULL: not started yet; the
-- delivery task starts it at the receipts stream's current end. A pending transaction carries
-- the position it completes (NULL: it does not move it), which advances only once the
-- transaction was answered 200, so receipts stored while the appservice is down survive a
-- restart and are pushed once.
ALTER TABLE appservice_stream ADD COLUMN receipts_pos INTEGER;
ALTER TABLE appservice_txns ADD COLUMN upto_receipts INTEGER;
