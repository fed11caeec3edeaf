"""What runs: a job and its jobs file, the file's rules, the catalog (reload, publish), the
project's spiders, and one crawl's command line, environment and verdict.
May import: settings, plan, system.
"""
