"""gateway.front_routes: raw routes served ahead of FastAPI own their paths; the rest is its."""

from __future__ import annotations

import httpx
from starlette.types import Receive, Scope, Send

from gateway.front_routes import FrontRoutedApp, RawRoute
from gateway.raw_asgi import send_json


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    await send_json(send, 200, b'{"item":"%b"}' % scope["path_params"]["item"].encode())


def _app() -> FrontRoutedApp:
    route = RawRoute("GET", "/items/{item}", r"/items/(?P<item>[^/]+)", _echo, {})
    app = FrontRoutedApp(front_routes=[route])

    @app.get("/other")
    async def other() -> dict[str, str]:
        return {"from": "fastapi"}

    return app


async def _request(method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.request(method, path)


async def test_a_front_route_gets_its_path_parameters() -> None:
    response = await _request("GET", "/items/abc")
    assert response.status_code == 200
    assert response.json() == {"item": "abc"}


async def test_another_method_on_a_front_path_is_a_json_405_naming_the_allowed_one() -> None:
    response = await _request("POST", "/items/abc")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json() == {"error": "http_405", "detail": "Method Not Allowed"}


async def test_a_trailing_slash_on_a_front_path_redirects_to_the_path() -> None:
    response = await _request("GET", "/items/abc/")
    assert response.status_code == 307
    assert response.headers["location"] == "http://test/items/abc"


async def test_other_paths_are_served_by_fastapi() -> None:
    response = await _request("GET", "/other")
    assert response.json() == {"from": "fastapi"}
    assert (await _request("GET", "/items")).status_code == 404
