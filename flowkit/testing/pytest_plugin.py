"""pytest collects conversation stories (``*.stories.yaml``) as tests: one test per story.

Installed with flowkit (entry point ``pytest11`` named ``flowkit.testing.pytest_plugin``, as the
module, so ``-p flowkit.testing.pytest_plugin`` names the same plugin and ``-p
no:flowkit.testing.pytest_plugin`` turns it off), so a project only drops story files next
to its tests. Each file names its flows (``flows: ../flows``, relative to the file) or
the project sets them once in its pytest configuration::

    [tool.pytest.ini_options]
    flowkit_flows = ["flows"]                       # relative to the rootdir
    flowkit_services = "myproject.services:services"  # optional: the real services, stubs on top

Stories run against ``flowkit_redis_url`` (or ``$FLOWKIT_REDIS_URL``; else flowkit's embedded
``redis-server``), each as its own session that is deleted afterwards. A failing story
prints every turn: what the user did, what the bot said, and what was expected instead.

This module imports nothing heavy until a story file is collected: pytest loads it in
every run of a project that has flowkit installed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

SUFFIXES = (".stories.yaml", ".stories.yml")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("flowkit_flows", "flow files or folders for story files that do not name their own `flows:`",
                  type="args", default=[])
    parser.addini("flowkit_services", "module:attribute of the ServiceRegistry stories run with", default="")
    parser.addini("flowkit_redis_url", "Redis the stories run against (default: $FLOWKIT_REDIS_URL, else the "
                  "embedded redis-server)", default="")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name.endswith(SUFFIXES):
        return StoriesFile.from_parent(parent, path=file_path)
    return None


class StoryFailed(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class StoriesFile(pytest.File):
    def collect(self) -> Any:
        from flowkit.errors import StoryError
        from flowkit.testing.stories import load_stories

        try:
            stories, settings = load_stories(self.path)
        except StoryError as exc:
            raise self.CollectError("\n".join(str(p) for p in exc.problems)) from None
        flows = [str(self.path.parent / p) for p in settings.get("flows", [])] or [
            str(Path(self.config.rootpath) / p) for p in self.config.getini("flowkit_flows")]
        if not flows:
            raise self.CollectError(f"{self.path}: no flows: write `flows: PATH` in the file (relative to it) or set "
                                    "flowkit_flows in the pytest configuration")
        for story in stories:
            yield StoryItem.from_parent(self, name=story.name, story=story, flows=tuple(flows))


class StoryItem(pytest.Item):
    def __init__(self, *, story: Any, flows: tuple[str, ...], **kw: Any) -> None:
        super().__init__(**kw)
        self.story = story
        self.flows = flows

    def runtest(self) -> None:
        from flowkit.testing.stories import run_stories

        resources = _resources(self.config)
        report = run_stories(resources.registry(self.flows), resources.store(), [self.story],
                             services=resources.services())
        if not report.ok:
            raise StoryFailed(report.results[0].text())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, StoryFailed):
            return excinfo.value.text
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.story.line - 1, f"story: {self.story.name}"


class _Resources:
    """What every story of a pytest run shares: one Redis client, flows loaded once per set of paths."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._store: Any = None
        self._registries: dict[tuple[str, ...], Any] = {}
        self._services: Any = False

    def store(self) -> Any:
        if self._store is None:
            from flowkit.store import Store, connect

            url = self.config.getini("flowkit_redis_url") or os.environ.get("FLOWKIT_REDIS_URL") or None
            self._store = Store(connect(url))
        return self._store

    def registry(self, flows: tuple[str, ...]) -> Any:
        if flows not in self._registries:
            from flowkit.flow import load_flows
            from flowkit.runtime import FlowRegistry

            self._registries[flows] = FlowRegistry(load_flows([Path(f) for f in flows]).values())
        return self._registries[flows]

    def services(self) -> Any:
        if self._services is False:
            spec = self.config.getini("flowkit_services")
            self._services = None
            if spec:
                import importlib

                module, _, attr = spec.partition(":")
                self._services = getattr(importlib.import_module(module), attr or "services")
        return self._services

    def close(self) -> None:
        if self._store is not None:
            self._store.client.close()


_KEY = pytest.StashKey[_Resources]()


def _resources(config: pytest.Config) -> _Resources:
    if _KEY not in config.stash:
        config.stash[_KEY] = _Resources(config)
    return config.stash[_KEY]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _KEY in config.stash:
        config.stash[_KEY].close()
