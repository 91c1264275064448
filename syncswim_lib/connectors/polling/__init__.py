"""Capture by polling, for sources without a change stream (docs/polling.md): the cursor
rules, the capture role over a `PollSource`, delete detection by key-set comparison, the
adaptive interval, and the checks `validate` makes."""
