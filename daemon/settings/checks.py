"""The settings' checks beyond one value's parser (daemon/settings/config.py runs them in this order): the rules
that take two values together, what only the file system can tell (the probes of
daemon/settings/probes.py: the project, the state directory, the password files), the page's basic
auth, and the engine's nodes. Each adds its problem, one line naming the variable, to `problems`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from daemon.settings import addresses as a, notify_config, parsers as p, probes as settings_probes
from daemon.settings.secret import Secret


def together(values: dict[str, Any], texts: dict[str, str], env: Mapping[str, str], problems: dict[str, str],
             by_name: Mapping[str, Any]) -> list[str]:  # fmt: skip
    """The rules that take two values together; returns the lines that name two variables."""
    if "DB_HOST" not in problems:
        detail = a.socket_path_problem(values["db_host"], values["db_port"])
        if detail is not None:
            problems["DB_HOST"] = by_name["DB_HOST"].parser.problem("DB_HOST", texts["DB_HOST"], detail)
    for password, file in (("DB_PASSWORD", "DB_PASSWORD_FILE"), ("SCHEDULER_HTTP_PASSWORD", "SCHEDULER_HTTP_PASSWORD_FILE"),
                           ("SCRAPYD_PASSWORD", "SCRAPYD_PASSWORD_FILE")):
        if env.get(password) and file in texts:
            problems.pop(password, None)
            problems[file] = f"{password} and {file}={p.show(texts[file])} are both set: set only one of them"
    if {"SCHEDULER_HISTORY_RETENTION_DAYS", "SCHEDULER_INTERVAL_HOURS"} & problems.keys():
        return []
    interval_hours = values["interval"].total_seconds() / 3600
    if values["history_retention_days"] * 24 >= 2 * interval_hours:
        return []
    # Retention shorter than the history the decision reads would delete a spider's last success
    # and run it again and again: keep at least two intervals. The line names the setting that was
    # given first (the other may be a default).
    retention = ("SCHEDULER_HISTORY_RETENTION_DAYS", f"{values['history_retention_days']:g}")
    interval = ("SCHEDULER_INTERVAL_HOURS", f"{interval_hours:g}")
    first, other = (retention, interval) if env.get(retention[0]) else (interval, retention)
    return [
        f"{first[0]}={p.show(first[1])} is not allowed with {other[0]}={p.show(other[1])}: the history kept must "
        f"cover at least two intervals ({2 * interval_hours / 24:g} days or more)"
    ]


def auth(texts: dict[str, str], env: Mapping[str, str], problems: dict[str, str]) -> None:
    """Basic auth (the page's, the Scrapyd nodes') needs a user and a password (or its file), or neither."""
    for user_name, password in (("SCHEDULER_HTTP_USER", "SCHEDULER_HTTP_PASSWORD"),
                                ("SCRAPYD_USERNAME", "SCRAPYD_PASSWORD")):  # fmt: skip
        names = (user_name, password, password + "_FILE")
        given = [n for n in names if (env.get(n) if n == password else n in texts)]
        user = user_name in given
        if problems.keys() & set(names) or user == (len(given) - user > 0):
            continue
        name = given[0]
        shown = p.hidden("") if name == password else p.show(texts[name])
        missing = user_name if name != user_name else f"{password} or its _FILE"
        problems[name] = f"{name}={shown} is not allowed without {missing}: basic auth needs both a user and a password"


def engine(values: dict[str, Any], problems: dict[str, str], by_name: Mapping[str, Any]) -> None:
    """The scrapyd engine needs its nodes; a node listed without `=N` gets SCRAPYD_NODE_SLOTS."""
    values["scrapyd_nodes"] = tuple(
        dataclasses.replace(node, slots=node.slots or values["scrapyd_node_slots"]) for node in values["scrapyd_nodes"]
    )
    if values["engine"] == "scrapyd" and not values["scrapyd_nodes"] and "SCRAPYD_NODES" not in problems:
        problems["SCRAPYD_NODES"] = by_name["SCRAPYD_NODES"].parser.problem(
            "SCRAPYD_NODES", "", "required with SCHEDULER_ENGINE=scrapyd"
        )


def probe(values: dict[str, Any], texts: dict[str, str], problems: dict[str, str], by_name: Mapping[str, Any]) -> None:
    """What only the file system can tell, for the values that parsed well (reads, never creates)."""
    probes: list[tuple[str, Callable[[Path], str | None]]] = [
        ("SCRAPY_PROJECT_DIR", settings_probes.project_problem),
        ("SCHEDULER_STATE_DIR", settings_probes.directory_problem),
    ]
    for name, probe in probes:
        var = by_name[name]
        if name not in problems and (detail := probe(values[var.field])) is not None:
            problems[name] = var.parser.problem(name, texts[name], detail)
    for name, field in (("DB_PASSWORD_FILE", "db_password"), ("SCHEDULER_HTTP_PASSWORD_FILE", "http_password"),
                        ("SCRAPYD_PASSWORD_FILE", "scrapyd_password")):  # fmt: skip
        path = values[by_name[name].field]
        if path is None or name in problems:
            continue
        detail, line = settings_probes.read_password_file(path)
        if detail is not None:
            problems[name] = by_name[name].parser.problem(name, texts[name], detail)
        else:
            values[field] = Secret(line)
    notify = by_name["SCHEDULER_NOTIFY_CONFIG"]
    if values[notify.field] is not None and notify.name not in problems:
        detail, text = notify_config.read_config(values[notify.field])
        if detail is not None:
            problems[notify.name] = notify.parser.problem(notify.name, texts[notify.name], detail)
            values[notify.field] = None
        else:
            values[notify.field] = notify_config.NotifyConfig(values[notify.field], Secret(text))
