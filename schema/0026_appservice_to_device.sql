-- 0026: positions of the unstable transaction extensions encrypted bridges use (MSC2409/MSC4203
-- to-device messages, MSC3202 device lists), per application service.
--
-- Like last_pos for events: to_device_inbox rows with stream_id <= to_device_pos and
-- device_list_changes rows with stream_id <= device_list_pos were pushed (or were of no
-- interest). NULL: not started yet; the delivery task starts it at the stream's current end.
-- A pending transaction carries the positions it completes (NULL: it does not move them), so a
-- re-sent transaction is identical and they advance only once it was answered 200.
ALTER TABLE appservice_stream ADD COLUMN to_device_pos INTEGER;
ALTER TABLE appservice_stream ADD COLUMN device_list_pos INTEGER;
ALTER TABLE appservice_txns ADD COLUMN upto_to_device INTEGER;
ALTER TABLE appservice_txns ADD COLUMN upto_device_list INTEGER;
