import os


def site_url(path="/"):
    return os.environ.get("TEST_SITE_URL", "http://127.0.0.1:9").rstrip("/") + path
