"""What anyone may ask without starting Scrapy: the commands (status, explain, logs, run-now,
pause, resume, cancel) and the answers the page shares with them (status, explain and how it is said).
May import: engines, records, jobs, settings, plan, system; never loop.
"""
