"""Where runs are recorded: PostgreSQL (the connection, migrations, named queries, the store,
the board the commands and the lock holder share) and the offline journal.
May import: jobs, settings, plan, system.
"""
