"""The step: the history copy, run-now and pause requests, one run and its recording,
housekeeping and the HTTP-cache sweep. Nothing but daemon/assemble.py imports it.
May import: leadership, engines, records, telemetry, jobs, settings, plan, system; never web or ask.
"""
