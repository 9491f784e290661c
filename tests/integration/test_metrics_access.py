"""``/metrics`` needs its bearer token; loopback alone proves nothing (issue 10). The in-process
client connects from 127.0.0.1, as every client does behind a proxy on the same host."""

from __future__ import annotations

from pathlib import Path

from support.app import make_settings, running_app


async def test_without_a_token_configured_nobody_gets_metrics(tmp_path: Path) -> None:
    async with running_app(make_settings(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path)) as app:
        key = await app.new_key("acme")
        for headers in ({}, {"Authorization": f"Bearer {key}"}, {"Authorization": "Bearer "}):
            response = await app.client.get("/metrics", headers=headers)
            assert response.status_code == 403
            assert response.json()["error"]["type"] == "permission_error"
            assert "qwenedit_" not in response.text


async def test_with_a_token_only_that_bearer_token_gets_metrics(tmp_path: Path) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, metrics_token="scrape-me"
    )
    async with running_app(settings) as app:
        key = await app.new_key("acme")
        for authorization in (None, f"Bearer {key}", "Bearer scrape-m", "Basic scrape-me"):
            headers = {"Authorization": authorization} if authorization else {}
            response = await app.client.get("/metrics", headers=headers)
            assert response.status_code == 401, authorization
            assert response.json()["error"]["type"] == "authentication_error"
            assert response.headers["www-authenticate"] == "Bearer"
        for authorization in ("Bearer scrape-me", "bearer  scrape-me"):
            allowed = await app.client.get("/metrics", headers={"Authorization": authorization})
            assert allowed.status_code == 200
            assert allowed.headers["content-type"].startswith("text/plain")
            assert "qwenedit_workers_alive" in allowed.text
