"""Every variable declared once, parsed, checked together and probed; `Secret`; the Scrapyd
nodes as a parsed address list. May import: system.
"""
