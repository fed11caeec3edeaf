"""Alert channels through Apprise, delivered for real: a json:// receiver and an SMTP server (aiosmtpd)
on 127.0.0.1, `notify-test`, per-job `notify` tags, and no URL or token in any output."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from tests.alert_receivers import JsonReceiver, SmtpReceiver, write_config
from tests.conftest import ROOT, free_port
from tests.helpers import events, json_lines, run_cli, wait_for

pytestmark = pytest.mark.e2e

TOKEN = "T0K3N-s3cr3t"


@pytest.fixture
def json_receiver():
    r = JsonReceiver()
    yield r
    r.close()


@pytest.fixture
def smtp():
    s = SmtpReceiver()
    yield s
    s.close()


def notify_test(env: dict[str, str], tmp_path: Path, *tag: str):  # noqa: ANN201
    return run_cli([sys.executable, "-m", "daemon", "notify-test", *tag], env, tmp_path)


def text_of(message) -> str:  # noqa: ANN001
    return message.get_body(preferencelist=("plain", "html")).get_content()


def test_notify_test_delivers_to_a_json_receiver_and_an_smtp_server_and_says_so(tmp_path, json_receiver, smtp):
    config = write_config(tmp_path / "apprise.txt",
                          f"oncall={json_receiver.url('/hook/' + TOKEN)}\nmail={smtp.url()}\n")  # fmt: skip
    env = {"SCHEDULER_NOTIFY_CONFIG": str(config), "SCHEDULER_STATE_DIR": str(tmp_path / "state")}
    done = notify_test(env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines == [f"#1 json://127.0.0.1:{json_receiver.port}: delivered",
                     f"#2 mailto://127.0.0.1:{smtp.port}: delivered"]  # fmt: skip
    assert [path for path, _ in json_receiver.posts] == [f"/hook/{TOKEN}"]
    assert json_receiver.posts[0][1]["title"] == "Test alert from the persistent scheduler"
    [mail] = smtp.messages
    assert mail["Subject"] == "Test alert from the persistent scheduler"
    assert "notify-test" in text_of(mail)
    assert TOKEN not in done.stdout + done.stderr


def test_notify_test_with_a_tag_reaches_only_that_tags_channels(tmp_path, json_receiver, smtp):
    config = write_config(tmp_path / "apprise.txt", f"oncall={json_receiver.url()}\nmail={smtp.url()}\n")
    env = {"SCHEDULER_NOTIFY_CONFIG": str(config), "SCHEDULER_STATE_DIR": str(tmp_path / "state")}
    done = notify_test(env, tmp_path, "mail")
    assert done.returncode == 0 and done.stdout.splitlines() == [f"#2 mailto://127.0.0.1:{smtp.port}: delivered"]
    assert json_receiver.posts == [] and len(smtp.messages) == 1
    unknown = notify_test(env, tmp_path, "nobody")
    assert unknown.returncode == 1 and "no channel has the tag 'nobody'" in unknown.stdout


def test_notify_test_exits_1_naming_the_channel_that_failed_never_its_token(tmp_path, json_receiver):
    down = free_port()  # nothing listens there
    config = write_config(tmp_path / "apprise.txt", f"{json_receiver.url()}\njson://127.0.0.1:{down}/{TOKEN}\n"
                                                    f"tgram://123456:{TOKEN}/789\n")  # fmt: skip
    env = {"SCHEDULER_NOTIFY_CONFIG": str(config), "SCHEDULER_STATE_DIR": str(tmp_path / "state")}
    done = notify_test(env, tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0] == f"#1 json://127.0.0.1:{json_receiver.port}: delivered"
    assert lines[1].startswith(f"#2 json://127.0.0.1:{down}: not delivered: ")
    assert lines[2].startswith("#3 tgram: not delivered: ")  # a Telegram host is its bot's token: never shown
    assert TOKEN not in done.stdout + done.stderr and "123456" not in done.stdout


def test_the_webhook_of_alert_webhook_url_is_one_more_channel_of_notify_test(tmp_path, json_receiver):
    env = {"ALERT_WEBHOOK_URL": f"http://127.0.0.1:{json_receiver.port}/hooks/{TOKEN}",
           "SCHEDULER_STATE_DIR": str(tmp_path / "state")}  # fmt: skip
    done = notify_test(env, tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip() == f"ALERT_WEBHOOK_URL http://127.0.0.1:{json_receiver.port}: delivered"
    assert json_receiver.posts[0][1]["kind"] == "notify_test"


@pytest.mark.parametrize(("mode", "content", "why"), [
    (0o644, "json://127.0.0.1:1/x", "others may read it (mode 0644; chmod o-r)"),
    (0o600, "", "it is empty"),
])  # fmt: skip
def test_a_config_file_others_may_read_or_empty_is_exit_2_naming_it_never_its_content(tmp_path, mode, content, why):
    config = write_config(tmp_path / "apprise.txt", content + f"/{TOKEN}" if content else "", mode)
    env = {"SCHEDULER_NOTIFY_CONFIG": str(config), "SCHEDULER_STATE_DIR": str(tmp_path / "state")}
    done = notify_test(env, tmp_path)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"config error: SCHEDULER_NOTIFY_CONFIG={str(config)!r} is not allowed: a regular file")
    assert line.endswith(f"({why})")
    assert TOKEN not in done.stderr


def test_a_config_apprise_cannot_read_is_exit_2_naming_the_line_never_its_text(tmp_path):
    config = write_config(tmp_path / "apprise.txt", f"json://127.0.0.1:1/ok\nbogus://{TOKEN}\n")
    env = {"SCHEDULER_NOTIFY_CONFIG": str(config), "SCHEDULER_STATE_DIR": str(tmp_path / "state")}
    done = notify_test(env, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"config error: SCHEDULER_NOTIFY_CONFIG={str(config)!r} is not allowed: Apprise "
                                   "cannot read line(s) 2")  # fmt: skip


JOBS = """
[defaults]
every = "1h"
retry_delay = "1h"

[jobs."{name}"]
spider = "boom"
notify = ["oncall"]
"""


def test_a_failing_jobs_alert_reaches_its_tags_channels_by_json_and_e_mail_never_the_others(
    base_env, tmp_path, daemon_factory, smtp
):  # fmt: skip
    oncall, team = JsonReceiver(), JsonReceiver()
    try:
        config = write_config(tmp_path / "apprise.txt", f"oncall={oncall.url('/' + TOKEN)}\nteam={team.url()}\n"
                                                        f"{smtp.url()}\n")  # fmt: skip
        jobs = tmp_path / "jobs.toml"
        jobs.write_text(JOBS.format(name="q.boom-1"))
        env = {**base_env, "SCHEDULER_NOTIFY_CONFIG": str(config), "SCHEDULER_JOBS_FILE": str(jobs),
               "SCHEDULER_OVERDUE_CHECK_MINUTES": "0.02"}  # fmt: skip
        d = daemon_factory(env).start()
        wait_for(lambda: any("q.boom-1" in m for m in oncall.messages()), timeout=90, what="the oncall alert")
        wait_for(lambda: smtp.messages, timeout=30, what="the e-mail of the untagged channel")
        assert team.posts == []  # tagged otherwise: the job's alerts are not its business
        mail = smtp.messages[0]
        assert "q.boom-1" in mail["Subject"] and "\n" not in mail["Subject"]
        assert "q.boom-1" in text_of(mail)
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=30) == 0
        assert TOKEN not in d.output()
        assert '"alert_delivered"' in d.output()
    finally:
        oncall.close()
        team.close()


def test_a_jobs_notify_tag_no_channel_has_is_a_jobs_file_error(base_env, tmp_path, json_receiver):
    config = write_config(tmp_path / "apprise.txt", f"oncall={json_receiver.url()}\n")
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(JOBS.format(name="quotes").replace('["oncall"]', '["oncal"]'))
    env = {**base_env, "SCHEDULER_NOTIFY_CONFIG": str(config), "SCHEDULER_JOBS_FILE": str(jobs)}
    done = run_cli([sys.executable, "-m", "daemon"], env, ROOT, timeout=60)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line == (f"config error: {jobs}: job 'quotes': notify='oncal' is not allowed: a tag of the alert channels "
                    "(oncall)")  # fmt: skip


def test_a_hostile_message_cannot_add_an_e_mail_header_or_a_recipient(tmp_path, smtp, json_receiver):
    import threading

    from daemon.settings.notify_config import NotifyConfig
    from daemon.telemetry.notify import Notifier
    from daemon.settings.secret import Secret

    config = NotifyConfig(tmp_path / "apprise.txt", Secret(f"{smtp.url()}\n{json_receiver.url()}\n"))
    notifier = Notifier(Secret(""), Secret(""), threading.Event(), channels=config)
    hostile = "boom\r\nBcc: victim@example.com\r\nSubject: owned\r\n\r\n<script>alert(1)</script>"
    notifier.alert(f"spider_failed\r\nBcc: victim2@example.com", hostile, job="q.boom-1", level="error")
    notifier.flush(60)
    [mail] = smtp.messages
    assert mail["Subject"] == "q.boom-1: spider_failed Bcc: victim2@example.com"  # one line, a header no more
    assert smtp.recipients == [["ops@example.com"]]  # the envelope: nobody added
    assert all(part["Bcc"] is None for part in mail.walk())  # no header of the message or of a part
    assert mail["To"] == "ops@example.com" and len(mail.get_all("Subject")) == 1
    assert "victim@example.com" in text_of(mail)  # the message is the body's text, whole
    [(_, body)] = json_receiver.posts
    assert body["message"] == hostile  # JSON carries it as a string: the receiver escapes it as text


def test_the_channels_file_is_read_again_on_sighup_and_a_bad_one_keeps_the_last_good_told_once(
    base_env, tmp_path, daemon_factory
):  # fmt: skip
    first, second = JsonReceiver(), JsonReceiver()
    try:
        config = write_config(tmp_path / "apprise.txt", f"oncall={first.url('/' + TOKEN)}\n")
        jobs = tmp_path / "jobs.toml"
        jobs.write_text(JOBS.format(name="quotes"))
        env = {**base_env, "SCHEDULER_NOTIFY_CONFIG": str(config), "SCHEDULER_JOBS_FILE": str(jobs)}
        d = daemon_factory(env).start()
        wait_for(lambda: first.messages(), timeout=90, what="the first failure's alert, to the first channel")

        def failures(receiver: JsonReceiver) -> list[str]:
            return [m for m in receiver.messages() if m.startswith("Job quotes failed")]

        def reload(text: str, event: str, n: int) -> None:
            write_config(config, text)
            d.signal(signal.SIGHUP)
            wait_for(lambda: len(events(json_lines(d.output()), event)) >= n, timeout=60, what=event)

        reload(f"oncall={second.url('/' + TOKEN)}\n", "notify_config_reloaded", 1)
        assert run_cli([sys.executable, "-m", "daemon", "run-now", "quotes"], env, tmp_path).returncode == 0
        wait_for(lambda: failures(second), timeout=90, what="the next failure's alert, to the new channel")
        assert len(failures(first)) == 1
        # A file that will not do (the job's tag gone): the last good channels stay, and are told once...
        reload(f"team={first.url('/' + TOKEN)}\n", "notify_config_invalid", 1)
        wait_for(lambda: [m for m in second.messages() if "channels' file" in m], timeout=60, what="the alert")
        # ...not again for another bad version (logged, not told).
        reload(f"bogus://{TOKEN}\n", "notify_config_invalid", 2)
        assert run_cli([sys.executable, "-m", "daemon", "run-now", "quotes"], env, tmp_path).returncode == 0
        wait_for(lambda: len(failures(second)) == 2, timeout=90, what="a failure's alert, to the last good channel")
        assert len([m for m in second.messages() if "channels' file" in m]) == 1
        assert len(failures(first)) == 1 and not [m for m in first.messages() if "channels' file" in m]
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=30) == 0
        assert TOKEN not in d.output()
        assert "Apprise cannot read line(s) 1" in d.output() and "no channel of it has: oncall" in d.output()
    finally:
        first.close()
        second.close()
