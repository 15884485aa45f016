"""Push rules: their model and predefined rules, evaluation, storage, and the notifications
(push actions) they produce for each new event."""
