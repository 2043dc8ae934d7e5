"""The AF daemon (``hil-af serve``): systemd notify, the JSON-lines protocol, the server.

- ``sdnotify``: ``sd_notify(3)`` over ``$NOTIFY_SOCKET`` (READY, STATUS, WATCHDOG, STOPPING).
- ``protocol``: parsing and validating one request line, encoding replies.
- ``server``: the Unix socket server, the control loop thread, signals.
"""
