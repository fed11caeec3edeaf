"""A spider that records what it was given: its arguments (`-a`) and the settings set on the command
line (`-s`), as JSON, to the path of its `out` argument. Otherwise it crawls like `ok`."""

import json

from scrapy.settings import SETTINGS_PRIORITIES

from testproject.spiders.local import OkSpider


class ArgsSpider(OkSpider):
    name = "args"

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        out = kwargs.get("out")
        if out:
            settings = crawler.settings
            given = {
                name: settings[name]
                for name in settings
                if settings.getpriority(name) == SETTINGS_PRIORITIES["cmdline"]
            }
            with open(out, "w", encoding="utf-8") as fh:
                json.dump({"args": kwargs, "settings": given}, fh)
        return spider
