"""The broker is decided once (runstack) and read by every process; the environment wins."""

from apps.frugal import broker


def test_without_a_choice_the_filesystem_broker_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    assert broker.configured_broker(tmp_path) == "filesystem://"


def test_the_recorded_choice_is_read_and_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.setattr(broker, "redis_answers", lambda url, timeout=0.3: True)
    assert broker.choose_broker(tmp_path) == broker.DEFAULT_REDIS
    assert (tmp_path / "broker_url").read_text().strip() == broker.DEFAULT_REDIS
    assert broker.configured_broker(tmp_path) == broker.DEFAULT_REDIS
    monkeypatch.setattr(broker, "redis_answers", lambda url, timeout=0.3: False)
    assert broker.choose_broker(tmp_path) == "filesystem://"
    assert broker.configured_broker(tmp_path) == "filesystem://"
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://elsewhere:6380/1")
    assert broker.configured_broker(tmp_path) == "redis://elsewhere:6380/1"
    assert broker.choose_broker(tmp_path) == "redis://elsewhere:6380/1"


def test_settings_do_not_probe_the_network_at_import(monkeypatch):
    import importlib
    import socket

    import apps.frugal.settings as settings_module

    def no_network(*args, **kwargs):
        raise AssertionError("settings probed the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    importlib.reload(settings_module)
