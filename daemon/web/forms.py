"""The page's buttons (issue #23): plain HTML forms, no JavaScript. Each posts to
/jobs/<name>/<action> with a token for this user, action and job (daemon/web/guard.py), and the
page it returns to shows a one-line notice. Every text here is escaped, job names included."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import tzinfo

from daemon.records.audit import Action
from daemon.web.page import esc, job_href

PAUSES = (("1h", "1 h"), ("4h", "4 h"), ("1d", "1 day"), ("", "until resumed"))  # daemon/web/acting.py



def controls(name: str, token: Callable[[str], str], *, paused: bool, in_file: bool, running: bool,
             back: str) -> str:  # fmt: skip
    """The buttons for one job: run now and pause (not paused), resume (paused, not by the file),
    cancel (a crawl runs). `token(action)`: the form token for this job."""
    parts = []
    if not paused:
        parts.append(_form(name, "run-now", token, back, '<button type="submit">Run now</button>'))
        buttons = "".join(f'<button type="submit" name="for" value="{esc(value)}">{esc(text)}</button>'
                          for value, text in PAUSES)  # fmt: skip
        parts.append(_form(name, "pause", token, back, f"Pause {buttons}"))
    elif in_file:
        parts.append('<span class="readonly">paused in the jobs file</span>')
    else:
        parts.append(_form(name, "resume", token, back, '<button type="submit">Resume</button>'))
    if running:
        parts.append(_form(name, "cancel", token, back, '<button type="submit">Cancel the running crawl</button>'))
    return f'<div class="controls">{"".join(parts)}</div>'


def _form(name: str, action: str, token: Callable[[str], str], back: str, inner: str) -> str:
    return (f'<form class="act" method="post" action="{esc(job_href(name) + "/" + action)}">'
            f'<input type="hidden" name="token" value="{esc(token(action))}">'
            f'<input type="hidden" name="back" value="{esc(back)}">{inner}</form>')  # fmt: skip


def notice(action: Action | None) -> str:
    """The one-line notice of the action a form just did (its audit row), or nothing."""
    if action is None:
        return ""
    kind = "notice refused" if action.result == "refused" else "notice"
    return f'<p class="{kind}" role="status">{esc(action.message)}</p>'


def read_only(why: str | None) -> str:
    return f'<p class="readonly">{esc(why)}</p>' if why else ""


def audit_table(rows: Iterable[Action], tz: tzinfo) -> str:
    rows = list(rows)
    if not rows:
        return "<p>No actions yet.</p>"
    cells = "".join(
        f"<tr><td>{esc(a.at.astimezone(tz).isoformat(timespec='seconds'))}</td><td>{esc(a.action)}</td>"
        f"<td>{esc(a.detail or '')}</td><td>{esc(a.actor)}</td><td>{esc(a.source)}</td>"
        f"<td>{esc(a.address or '')}</td><td>{esc(a.result)}</td><td>{esc(a.message)}</td></tr>"
        for a in rows)  # fmt: skip
    return ("<table class=audit><tr><th>when</th><th>action</th><th>detail</th><th>by</th><th>from</th>"
            f"<th>address</th><th>result</th><th>notice</th></tr>{cells}</table>")  # fmt: skip
