"""Circuit breakers in front of 1C: transition log, admin page, command, metrics.

The breakers themselves live in ``worker.recovery.circuit``; this app stores
their transitions and lets operators see and force their states.
"""
