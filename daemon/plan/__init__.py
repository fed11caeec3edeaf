"""The pure decision: what is due, backoff, pauses, most overdue first, folding offline results;
and jitter's hold-back. May import nothing of the daemon.
"""
