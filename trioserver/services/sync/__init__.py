"""/sync: the sync engine and the streams it draws from."""
