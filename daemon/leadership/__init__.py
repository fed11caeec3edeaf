"""Which daemon runs the spiders: the lease, what a new holder settles first (the take-over),
and who a holder is. May import: records, telemetry, system.
"""
