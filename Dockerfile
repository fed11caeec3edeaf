# The persistent scheduler. Dependencies live in a virtualenv built in a first stage, so the final
# image carries only what runs: the interpreter, the venv, the daemon, its migrations and the
# example Scrapy project. No secret is ever passed to the build.
FROM python:3.11-slim-bookworm AS build
# pip trusts the system CA bundle (the same file on Docker Hub's image and on mirrors behind a
# TLS-inspecting proxy); the value exists only in this stage.
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt \
 && rm -rf /opt/venv/lib/python3*/site-packages/pip /opt/venv/lib/python3*/site-packages/setuptools

FROM python:3.11-slim-bookworm
# TZ=UTC: the `schedule` library reads the naive local clock; stored times are UTC regardless.
ENV PATH=/opt/venv/bin:$PATH \
    TZ=UTC \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SCRAPY_PROJECT_DIR=/app/example_project \
    SCHEDULER_STATE_DIR=/var/lib/persistent-scheduler
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home --shell /usr/sbin/nologin scheduler \
 && install -d -o scheduler -g scheduler -m 0700 /var/lib/persistent-scheduler
# The heartbeat, crawl stats and the journal of runs made while PostgreSQL was unreachable: a
# volume, so the journal survives the container. The daemon's user alone may write there (0700,
# copied into a new volume): the daemon refuses a state directory anyone else may write.
VOLUME /var/lib/persistent-scheduler
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY daemon/ daemon/
COPY sql/ sql/
COPY example_project/ example_project/
COPY docker-entrypoint.sh ./
# Byte-compile once at build time: the root filesystem is read-only at run time.
RUN python -m compileall -q /opt/venv /app >/dev/null \
 && chmod 0755 /app/docker-entrypoint.sh \
 && ln -s /app/docker-entrypoint.sh /docker-entrypoint.sh
USER scheduler
# Healthy only while the loop keeps refreshing its heartbeat (every tick), not merely while the
# process exists.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["python", "-m", "daemon", "healthcheck"]
# Each crawl is forked from a warm parent that imported Scrapy once (`python -m daemon.engines.warm_parent`,
# started by the daemon when a crawl is due, gone a minute after the last): SCHEDULER_CRAWL_START=cold
# turns it off, warm-project also preloads the project (README "How a crawl starts").
# No CMD: without a command the entrypoint runs the daemon as one process that waits for
# PostgreSQL and migrates itself (`python -m daemon run --migrate`); with one (`status`, `true`, a
# shell) it waits and migrates first, then runs it.
ENTRYPOINT ["/docker-entrypoint.sh"]
