"""What the outside sees: log setup and log lines, metrics, alerts and pings (and their
short-lived sender process), the heartbeat file, and the observer that feeds them.
May import: jobs, settings, plan, system.
"""
