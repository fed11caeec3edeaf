"""What the daemon takes from the machine: the clock seam, the state directory it trusts,
memory given back to the system, and its exceptions with their exit codes.
May import nothing of the daemon.
"""
