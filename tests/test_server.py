"""The web app: JSON API, security (no path a client sends is opened), limits, and the page in a real browser."""

from __future__ import annotations

import io
import os
import shutil

import pytest
from fastapi.testclient import TestClient
from helpers import free_port, png_bytes, shape_image, start_server, write_gallery
from PIL import Image

from pictext.search import Index
from pictext.server.app import create_app


@pytest.fixture
def indexed(tmp_path, tiny_model_path):
    root = tmp_path / "photos"
    write_gallery(root)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET")
    shape_image("red", "circle").save(outside / "secret.png")
    index = Index(tmp_path / "index", model=tiny_model_path)
    index.add([root])
    return index, root, outside


def test_api_search_similar_classify_thumbs(indexed):
    index, root, _ = indexed
    client = TestClient(create_app(index))
    assert client.get("/api/status").json()["images"] == 40
    found = client.get("/api/search", params={"q": '"red" + circle - 0.5:small', "k": 5}).json()["results"]
    assert len(found) == 5 and found[0]["score"] >= found[-1]["score"]
    upload = png_bytes(Image.open(root / "blue-cross-small-0.png"))
    by_image = client.post("/api/search/image", files={"file": ("q.png", upload)}, data={"k": "3"}).json()
    assert by_image["results"][0]["name"] == "blue-cross-small-0.png"
    similar = client.get(f"/api/similar/{by_image['results'][0]['id']}", params={"k": 2}).json()["results"]
    assert similar[0]["id"] == by_image["results"][0]["id"]
    probs = client.post("/api/classify", files={"file": ("q.png", upload)}, data={"labels": "red, blue, green"}).json()
    assert sorted(p["label"] for p in probs["labels"]) == ["blue", "green", "red"]
    assert abs(sum(p["prob"] for p in probs["labels"]) - 1) < 1e-3
    thumb = client.get(f"/api/thumb/{found[0]['id']}")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size[0] <= 256
    full = client.get(f"/api/image/{found[0]['id']}")
    assert full.status_code == 200 and full.content[:4] == b"\x89PNG"
    assert "/api/search" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/image/../../outside/secret.txt",
        "/api/image/..%2F..%2Foutside%2Fsecret.txt",
        "/api/image/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/api/image/{abs}",
        "/api/thumb/..%252F..%252Fetc%252Fpasswd",
        "/api/thumb/-1",
        "/api/image/999999",
        "/api/similar/..%2Fsecret",
        "/static/../../outside/secret.txt",
        "/..%2F..%2Foutside%2Fsecret.txt",
        "/api/search?q=a&path=../outside/secret.txt",
    ],
)
def test_no_endpoint_reads_outside_the_indexed_folders(indexed, url):
    index, _, outside = indexed
    client = TestClient(create_app(index))
    response = client.get(url.replace("{abs}", str(outside / "secret.txt").replace("/", "%2F")))
    assert b"SECRET" not in response.content
    assert response.headers["content-type"].startswith("application/json")
    if response.status_code >= 400:
        assert "error" in response.json() and "Traceback" not in response.text


def test_a_symlink_swapped_in_after_indexing_is_not_served(indexed):
    index, root, outside = indexed
    client = TestClient(create_app(index))
    victim = root / "red-circle-large-0.png"
    record = index.catalog.at(str(victim))[str(victim)]
    victim.unlink()
    os.symlink(outside / "secret.png", victim)  # the catalog still names it; its real path is now outside
    for url in (f"/api/image/{record.id}", f"/api/thumb/{record.id}"):
        response = client.get(url)
        assert response.status_code == 404 and "no longer inside" in response.json()["error"]
    shutil.rmtree(root)  # and a folder that has gone: 404, not a crash
    assert client.get("/api/image/1").status_code == 404


def test_token_is_required_when_set(indexed):
    index, _, _ = indexed
    client = TestClient(create_app(index, token="s3cret"))
    for url in ("/", "/api/status", "/api/search?q=red", "/openapi.json", "/api/thumb/1"):
        response = client.get(url)
        assert response.status_code == 401 and "token" in response.json()["error"]
    assert client.get("/api/status", params={"token": "wrong"}).status_code == 401
    assert client.get("/api/status", params={"token": "s3cret"}).status_code == 200
    assert client.get("/api/status", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_uploads_over_the_limits_get_413_and_bad_ones_400(indexed):
    index, _, _ = indexed
    client = TestClient(create_app(index, max_upload_bytes=50_000))
    big = os.urandom(60_000)
    response = client.post("/api/search/image", files={"file": ("big.png", big)})
    assert response.status_code == 413 and "limit" in response.json()["error"]
    huge = io.BytesIO()
    Image.new("1", (7000, 7000)).save(huge, "PNG")  # 49 Mpixel in a few kB
    response = client.post("/api/search/image", files={"file": ("huge.png", huge.getvalue())})
    assert response.status_code == 413 and "pixels" in response.json()["error"]
    response = client.post("/api/search/image", files={"file": ("text.png", b"hello, not an image")})
    assert response.status_code == 400 and "not a readable image" in response.json()["error"]
    for params in ({"q": ""}, {"q": "a -"}, {"q": '"unclosed'}, {"q": "red", "k": 0}):
        response = client.get("/api/search", params=params)
        assert response.status_code == 400 and response.json()["error"]
    upload = png_bytes(shape_image("red", "circle"))
    response = client.post("/api/classify", files={"file": ("a.png", upload)}, data={"labels": "red, , red"})
    assert response.status_code == 400 and "label" in response.json()["error"]
    assert client.get("/api/search").status_code == 422
    assert len(index) == 40


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("PICTEXT_REQUIRE_BROWSER"),
    reason="no chromium here (make test installs Debian's and requires it)",
)
def test_the_page_in_a_real_browser(indexed, tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None, "PICTEXT_REQUIRE_BROWSER is set but chromium is not installed"
    index, root, _ = indexed
    port = free_port()
    server, thread = start_server(create_app(index), port)
    query_file = tmp_path / "query.png"
    Image.open(root / "green-square-large-0.png").save(query_file)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
            )
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.getElementById('status').textContent.includes('40 images')")
            page.fill("#q", '"red" + circle')
            page.press("#q", "Enter")
            page.wait_for_selector(".hit img")
            page.wait_for_function("[...document.querySelectorAll('.hit img')].every(i => i.complete)")
            assert page.locator(".hit").count() == 24
            assert page.eval_on_selector(".hit img", "img => img.naturalWidth") > 0  # thumbnails really load
            page.set_input_files("#upload", str(query_file))
            page.wait_for_function(
                "document.querySelector('.hit .meta span')?.textContent === 'green-square-large-0.png'"
            )
            page.click(".hit")  # more like this
            page.wait_for_function("document.querySelectorAll('.hit').length === 24")
            page.fill("#q", "a -")
            page.press("#q", "Enter")
            page.wait_for_function("document.getElementById('error').textContent.includes('operator')")
            page.click("#tab-classify")
            page.set_input_files("#classify-file", str(query_file))
            page.fill("#labels", "red, green, blue")
            page.click("#classify-form button")
            page.wait_for_selector("#classify-results tr")
            assert page.locator("#classify-results tr").count() == 3
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_serve_refuses_a_public_address_without_a_token(capsys):
    from pictext.cli import main

    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "--token" in capsys.readouterr().err
