"""The HTTP endpoint and the page: routes, the HTML, the SVG lanes and their pure model, the
read-only session the page reads PostgreSQL through. Imported only when SCHEDULER_HTTP_PORT is set.
May import: ask, records, telemetry, jobs, settings, plan, system; never loop or engines.
"""
