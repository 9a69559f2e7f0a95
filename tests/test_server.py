"""The web app: JSON API, security (no path a client sends is opened), limits, and the page in a real browser."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import select
import shutil
import socket
import stat
import threading
import time
from urllib.request import urlopen

import httpx
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from pictext.search import Index
from pictext.server.app import create_app

from helpers import free_port, png_bytes, shape_image, start_server, wait_until, write_gallery

TOKEN = "a-token-of-some-length-0123"


def local(app) -> TestClient:
    """A test client that talks to the app as a browser on this machine would (Host: 127.0.0.1)."""
    return TestClient(app, base_url="http://127.0.0.1")


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
    client = local(create_app(index))
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
    client = local(create_app(index))
    response = client.get(url.replace("{abs}", str(outside / "secret.txt").replace("/", "%2F")))
    assert b"SECRET" not in response.content
    assert response.headers["content-type"].startswith("application/json")
    if response.status_code >= 400:
        assert "error" in response.json() and "Traceback" not in response.text


def test_a_symlink_swapped_in_after_indexing_is_not_served(indexed):
    index, root, outside = indexed
    client = local(create_app(index))
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
    client = local(create_app(index, token=TOKEN))
    for url in ("/", "/api/status", "/api/search?q=red", "/openapi.json", "/api/thumb/1"):
        response = client.get(url)
        assert response.status_code == 401 and "token" in response.json()["error"]
    assert client.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/api/status", headers={"Authorization": TOKEN}).status_code == 401  # no scheme
    assert client.get("/api/status", headers={"Authorization": "Bearer " + TOKEN[:-1]}).status_code == 401
    right = {"Authorization": f"Bearer {TOKEN}"}
    wrong_in_url = client.get("/api/status", params={"token": "wrong"}, headers=right)
    assert wrong_in_url.status_code == 400 and "header" in wrong_in_url.json()["error"]  # one way only
    assert client.get("/", params={"token": "wrong"}).status_code == 401
    login = client.get("/", params={"token": TOKEN}, follow_redirects=False)  # a browser's one-time login
    assert login.status_code == 303 and login.headers["location"] == "/"
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/api/status").status_code == 200  # the cookie now carries it
    client.cookies.clear()
    both = {**right, "Cookie": "pictext_token=wrong-but-long-enough-000"}
    assert client.get("/api/status", headers=both).status_code == 401  # every credential must be right


def test_short_tokens_are_refused(indexed, monkeypatch, tmp_path, capsys):
    from pictext.cli import main
    from pictext.server.app import TokenError

    with pytest.raises(TokenError, match="at least 16"):
        create_app(indexed[0], token="x")
    monkeypatch.setenv("PICTEXT_TOKEN", "short")
    assert main(["serve", "--host", "0.0.0.0", "--index", str(indexed[0].path)]) == 2
    assert "at least 16" in capsys.readouterr().err
    assert main(["serve", "--token-file", str(tmp_path / "none"), "--index", str(indexed[0].path)]) == 2
    assert "--token-file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--port", "99999"])
    assert "from 1 to 65535" in capsys.readouterr().err


def test_uploads_over_the_limits_get_413_and_bad_ones_400(indexed):
    index, _, _ = indexed
    client = local(create_app(index, max_upload_bytes=50_000))
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


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("PICTEXT_REQUIRE_BROWSER"),
    reason="no chromium here (make test installs Debian's and requires it)",
)
def test_the_page_in_a_real_browser(indexed, tmp_path, serve):
    from urllib.parse import quote

    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None, "PICTEXT_REQUIRE_BROWSER is set but chromium is not installed"
    index, root, _ = indexed
    base = serve(create_app(index))
    locked = serve(create_app(index, token=TOKEN))
    query_file = tmp_path / "query.png"
    Image.open(root / "green-square-large-0.png").save(query_file)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page()
        blocked = []
        page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(f"{base}/?q={quote(chr(34) + 'red' + chr(34) + ' + circle')}")  # a search opened by its URL
        page.wait_for_function("() => document.getElementById('status').textContent.includes('40 images')")
        page.wait_for_selector(".hit img")
        page.wait_for_function("() => [...document.querySelectorAll('.hit img')].every(i => i.complete)")
        assert page.locator(".hit").count() == 24 and page.input_value("#q") == '"red" + circle'
        assert page.eval_on_selector(".hit img", "img => img.naturalWidth") > 0  # thumbnails really load
        first = page.text_content(".hit .meta span")
        page.fill("#q", "blue")
        page.press("#q", "Enter")
        page.wait_for_url("**/?q=blue&k=24")
        page.click(".hit")  # more like this: the URL and the page say which image
        page.wait_for_url("**/?like=*")
        page.wait_for_function("() => document.getElementById('like').textContent.startsWith('More like ')")
        page.go_back()
        page.wait_for_function("() => document.getElementById('q').value === 'blue'")
        page.go_back()
        page.wait_for_function(f"() => document.querySelector('.hit .meta span')?.textContent === {first!r}")
        assert page.input_value("#q") == '"red" + circle'
        page.set_input_files("#upload", str(query_file))
        page.wait_for_function(
            "() => document.querySelector('.hit .meta span')?.textContent.startsWith('green-square-l')"
        )
        page.fill("#q", "a -")
        page.press("#q", "Enter")
        page.wait_for_function("() => document.getElementById('error').textContent.includes('operator')")
        page.click("#tab-classify")
        page.set_input_files("#classify-file", str(query_file))
        page.fill("#labels", "red, green, blue")
        page.click("#classify-form button")
        page.wait_for_selector("#classify-results tr")
        assert page.locator("#classify-results tr").count() == 3
        assert not blocked, blocked  # the page runs under its own CSP without violations

        page.goto(f"{locked}/?token={TOKEN}")  # a token server: one login, then the cookie carries it
        page.wait_for_function("() => document.getElementById('status').textContent.includes('40 images')")
        assert "token" not in page.url
        browser.close()


def test_serve_refuses_a_public_address_without_a_token(capsys):
    from pictext.cli import main

    assert main(["serve", "--host", "0.0.0.0"]) == 2
    assert "--token" in capsys.readouterr().err


# ---- security and limits through real HTTP (a uvicorn on 127.0.0.1) ---------------------------------------------


@pytest.fixture
def serve():
    """serve(app) -> base URL of a real uvicorn running `app` on 127.0.0.1; stopped after the test."""
    running = []

    def start(app) -> str:
        port = free_port()
        running.append(start_server(app, port))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=10)


def assert_safe_headers(response) -> None:
    csp = response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["cross-origin-resource-policy"] == "same-origin"


def test_only_decoded_images_are_served_and_every_response_is_hardened(indexed, serve):
    index, root, _ = indexed
    (root / "page.html").write_text("<script>window.pwned = 1</script>")
    os.symlink(root / "page.html", root / "page.jpg")  # a link inside the folder to a page
    (root / "fake.jpg").write_text("<html><script>window.pwned = 1</script></html>")  # fails to index
    index.add([root])
    swapped = root / "red-circle-large-0.png"  # indexed as an image, then replaced by a link to the page
    swapped.unlink()
    os.symlink(root / "page.html", swapped)
    ids = {name: index.catalog.at(str(root / name))[str(root / name)].id for name in ("page.jpg", "fake.jpg")}
    ids["swapped"] = index.catalog.at(str(swapped))[str(swapped)].id
    base = serve(create_app(index))
    for name, file_id in ids.items():
        for route in ("image", "thumb"):
            response = httpx.get(f"{base}/api/{route}/{file_id}")
            assert response.status_code == 404, (name, route)
            assert response.headers["content-type"] == "application/json" and b"pwned" not in response.content
            assert_safe_headers(response)
    good = index.catalog.at(str(root / "blue-cross-small-0.png"))[str(root / "blue-cross-small-0.png")].id
    response = httpx.get(f"{base}/api/image/{good}")
    assert response.headers["content-type"] == "image/png" and response.content[:4] == b"\x89PNG"
    assert_safe_headers(response)
    for url in ("/", "/static/app.js", "/api/status", "/api/nothing"):
        assert_safe_headers(httpx.get(base + url))


def test_only_the_host_names_it_was_started_for(indexed, serve):
    base = serve(create_app(indexed[0]))
    port = base.rsplit(":", 1)[1]
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
        response = httpx.get(f"{base}/api/status", headers={"Host": host})  # a rebound DNS name
        assert response.status_code == 421 and "answers to" in response.json()["error"]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST"):
        assert httpx.get(f"{base}/api/status", headers={"Host": host}).status_code == 200
    lan = serve(create_app(indexed[0], token=TOKEN, allowed_hosts=("127.0.0.1", "photos.lan")))
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{lan}/api/status", headers={"Host": "photos.lan:80", **bearer}).status_code == 200
    assert httpx.get(f"{lan}/api/status", headers={"Host": "other.lan", **bearer}).status_code == 421


def test_requests_from_other_sites_are_refused(indexed, serve, monkeypatch):
    index, _, _ = indexed
    base = serve(create_app(index))
    calls = []
    real = index.query_vector
    monkeypatch.setattr(index, "query_vector", lambda q: calls.append(q) or real(q))
    upload = {"file": ("q.png", png_bytes(shape_image("red", "circle")))}
    for origin in ("http://evil.example", "null", base.replace("127.0.0.1", "localhost"), base + ":1"):
        response = httpx.post(f"{base}/api/classify", files=upload, data={"labels": "a, b"}, headers={"Origin": origin})
        assert response.status_code == 403 and "other sites" in response.json()["error"]
        response = httpx.post(f"{base}/api/search/image", files=upload, headers={"Origin": origin})
        assert response.status_code == 403
    cross = httpx.get(f"{base}/api/search", params={"q": "red"}, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403 and not calls  # nothing ran for them
    own = httpx.post(
        f"{base}/api/search/image", files=upload, headers={"Origin": base, "Sec-Fetch-Site": "same-origin"}
    )
    assert own.status_code == 200 and len(calls) == 1
    assert httpx.get(base + "/", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200  # a link to the page


def test_a_chunked_upload_is_cut_off_at_the_limit(indexed, serve):
    limit = 50_000
    base = serve(create_app(indexed[0], max_upload_bytes=limit))
    port = int(base.rsplit(":", 1)[1])
    head = (
        b"POST /api/search/image HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: multipart/form-data; boundary=XX\r\n\r\n"
    )
    part = b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
    reply, sent = b"", 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + f"{len(part):x}\r\n".encode() + part + b"\r\n")
        chunk = b"\0" * 16_384
        try:
            while sent < 200 * limit and not select.select([sock], [], [], 0)[0]:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
            while b"}" not in reply and (data := sock.recv(65536)):  # headers, then the JSON body
                reply += data
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert reply.startswith(b"HTTP/1.1 413"), (reply[:200], sent)
    assert b"over the limit" in reply


def test_the_body_limit_stops_reading_the_stream(indexed):
    """At the ASGI level: no more than the limit plus one chunk is ever read from a chunked body."""
    import anyio

    pulled, chunk, limit = [0], b"x" * 10_000, 50_000

    part = b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'

    async def receive() -> dict:
        body = part if pulled[0] == 0 else chunk
        pulled[0] += len(body)
        return {"type": "http.request", "body": body, "more_body": True}

    sent = []

    async def send(message: dict) -> None:
        sent.append(message)

    app = create_app(indexed[0], max_upload_bytes=limit)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/api/search/image", "raw_path": b"/api/search/image", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"multipart/form-data; boundary=XX")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    anyio.run(app, scope, receive, send)
    assert sent[0]["status"] == 413 and pulled[0] <= limit + len(chunk)


def test_big_requests_are_refused_and_light_routes_answer_while_the_model_works(indexed, serve, monkeypatch):
    MAX_PENDING = 6
    monkeypatch.setattr("pictext.server.state.MAX_PENDING", MAX_PENDING)  # a short queue for a short test
    index, _, _ = indexed
    base = serve(create_app(index))
    long_query = " + ".join(f"word{i}" for i in range(3_000))  # 27 kB
    response = httpx.get(f"{base}/api/search", params={"q": long_query})
    assert response.status_code == 400 and "characters" in response.json()["error"]
    many = " + ".join("ab" for _ in range(40))
    assert "terms" in httpx.get(f"{base}/api/search", params={"q": many}).json()["error"]
    upload = {"file": ("q.png", png_bytes(shape_image("red", "circle")))}
    labels = ",".join(f"label {i}" for i in range(1000))
    response = httpx.post(f"{base}/api/classify", files=upload, data={"labels": labels})
    assert response.status_code == 400 and "labels" in response.json()["error"]

    release, entered, real = threading.Event(), threading.Event(), index.query_vector

    def slow(query):
        entered.set()
        release.wait(60)
        return real(query)

    monkeypatch.setattr(index, "query_vector", slow)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(httpx.get(f"{base}/api/search?q=red", timeout=90).status_code))
        for _ in range(MAX_PENDING)
    ]
    try:
        for t in threads:
            t.start()
        wait_until(entered.is_set, 30, "the model to start on the first search")
        wait_until(lambda: httpx.get(f"{base}/api/status").json()["busy"] == MAX_PENDING, 30, "a full queue")
        busy = httpx.get(f"{base}/api/search", params={"q": "red"})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "2"  # the queue is bounded
        assert httpx.get(f"{base}/api/thumb/1").status_code == 200  # light routes answer meanwhile
        assert httpx.get(f"{base}/").status_code == 200
        assert all(t.is_alive() for t in threads)  # ...while every model request is still waiting
    finally:
        release.set()
        for t in threads:
            t.join(60)
    assert results == [200] * MAX_PENDING


def test_edge_values_are_clear_4xx_and_never_nan(indexed, serve, capsys):
    from pictext.cli import main

    index, _, _ = indexed
    base = serve(create_app(index))
    for url in ("/api/image/9223372036854775808", "/api/thumb/99999999999999999999", "/api/similar/-5"):
        response = httpx.get(base + url)
        assert response.status_code == 404 and "no indexed image" in response.json()["error"]
    for q, message in (("red - red", "cancel out"), ("a - a", "cancel out"), ("999999:red", "at most 100")):
        response = httpx.get(f"{base}/api/search", params={"q": q})
        assert response.status_code == 400 and message in response.json()["error"], q
    assert main(["search", "red", "-", "red", "--json", "--index", str(index.path)]) == 2
    assert "cancel out" in capsys.readouterr().err


def test_the_index_folder_is_private(indexed):
    index, _, _ = indexed
    assert stat.S_IMODE(os.stat(index.path).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(index.path / "catalog.sqlite").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(index.path / "vectors.f16").st_mode) == 0o600


# ---- the Generate tab ---------------------------------------------------------------------------------------------


@pytest.fixture
def generator(tiny_model_path):
    from pictext.clip.io import load_clip
    from pictext.server.app import Generation
    from pictext.vqgan import VQGAN, VQGANConfig

    torch.manual_seed(0)
    vqgan = VQGAN(VQGANConfig(resolution=32, ch=32, ch_mult=(1, 2), attn_resolutions=(), z_channels=32,
                              embed_dim=16, n_embed=64))  # fmt: skip
    clip = load_clip(tiny_model_path)
    return Generation({"vqgan-clip": {"clip": [clip], "vqgan": vqgan.eval()},
                       "dalle": {"dalle": _tiny_dalle(vqgan.eval()), "clip": [clip]}})  # fmt: skip


def _tiny_dalle(vqgan):
    from pictext.dalle.io import DALLEPipeline
    from pictext.dalle.model import DALLE, DALLEConfig
    from pictext.text import train_bpe_tokenizer

    text = train_bpe_tokenizer(["a red circle", "a blue square"] * 5, vocab_size=300, context_length=8)
    config = DALLEConfig(text_vocab=text.vocab_size, image_vocab=64, text_len=8, image_grid=16, width=32, layers=1,
                         heads=2)  # fmt: skip
    return DALLEPipeline(DALLE(config).eval(), text, vqgan)


def _pixels(line: dict) -> bytes:
    """The pixels of a streamed picture (the done line's PNG carries its settings too, a frame's does not)."""
    return Image.open(io.BytesIO(base64.b64decode(line["image"].split(",", 1)[1]))).convert("RGB").tobytes()


def stream_lines(response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line]


def test_generate_streams_frames_then_the_png_and_refuses_bad_or_concurrent_jobs(indexed, generator):
    index = indexed[0]
    off = local(create_app(index))
    assert off.get("/api/generate/status").json()["available"] is False
    assert off.get("/api/generate", params={"prompt": "a red circle"}).status_code == 404
    client = local(create_app(index, generation=generator))
    status = client.get("/api/generate/status").json()
    assert status["available"] and status["methods"] == ["vqgan-clip", "dalle"] and not status["running"]
    steps = status["settings"]["vqgan-clip"]["steps"]  # read from the settings dataclass: its default and limits
    assert steps == {"setting": "steps", "default": 200, "low": 1, "high": 500}
    assert status["settings"]["dalle"]["guidance"]["default"] == 3.0
    params = {"prompt": "a red circle", "steps": 4, "seed": 2, "size": 30, "frame_every": 1}
    response = client.get("/api/generate", params=params)
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    lines = stream_lines(response)
    assert [x["type"] for x in lines] == ["frame"] * 4 + ["done"]
    assert [x["step"] for x in lines[:4]] == [1, 2, 3, 4] and lines[-1]["name"] == "a-red-circle-2.png"
    png = base64.b64decode(lines[-1]["image"].split(",", 1)[1])
    assert Image.open(io.BytesIO(png)).size == (30, 30)
    for params, message in (({"prompt": " "}, "empty"), ({"prompt": "a", "steps": 0}, "steps"),
                            ({"prompt": "a", "size": 4096}, "size"), ({"prompt": "a:x"}, "number"),
                            ({"prompt": "a", "lr": "nan"}, "lr must be a finite number"),
                            ({"prompt": "a", "samples": 3}, "samples: not settings of this method")):  # fmt: skip
        response = client.get("/api/generate", params=params)
        assert response.status_code == 400 and message in response.json()["error"]
    with generator.busy:  # a job is running
        busy = client.get("/api/generate", params={"prompt": "a red circle", "steps": 2})
        assert busy.status_code == 409 and "one at a time" in busy.json()["error"]


def with_unclip_model(generator):
    """The generator with a tiny random unCLIP in its CLIP's space (8 px pictures)."""
    from pictext.unclip.decoder import DecoderConfig, DiffusionDecoder
    from pictext.unclip.pipeline import UnclipPipeline
    from pictext.unclip.prior import DiffusionPrior, PriorConfig

    clip = generator.models["dalle"]["clip"][0]
    E, T = clip.config.embed_dim, clip.config.text.context_length
    torch.manual_seed(0)
    unclip = UnclipPipeline(clip, DiffusionPrior(PriorConfig(embed_dim=E, text_len=T, width=32, heads=2, layers=1)),
                            DiffusionDecoder(DecoderConfig(embed_dim=E, resolution=8, channels=(32, 32))))  # fmt: skip
    return dataclasses.replace(generator, models=generator.models | {"unclip": {"unclip": unclip}})


def _png(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), color).save(buffer, "PNG")
    return buffer.getvalue()


def test_unclip_variations_and_interpolations_take_uploads_and_refuse_bad_input(indexed, generator):
    with_unclip = with_unclip_model(generator)
    client = local(create_app(indexed[0], generation=with_unclip))
    red, blue = ("red.png", _png("red"), "image/png"), ("blue.png", _png("blue"), "image/png")
    response = client.post("/api/unclip/vary", files={"file": red}, data={"n": 3, "seed": 1})
    assert response.status_code == 200
    images = response.json()["images"]
    assert len(images) == 3 and len(set(images)) == 3  # three noises, three pictures
    assert Image.open(io.BytesIO(base64.b64decode(images[0].split(",", 1)[1]))).size == (8, 8)
    assert client.post("/api/unclip/vary", files={"file": red}, data={"n": 3, "seed": 1}).json()["images"] == images
    both = {"a": red, "b": blue}
    assert len(client.post("/api/unclip/interpolate", files=both, data={"n": 4}).json()["images"]) == 4
    for url, files, data, message in (
        ("/api/unclip/vary", {"file": ("x.png", b"not a picture", "image/png")}, {}, "x.png"),
        ("/api/unclip/vary", {"file": red}, {"n": 0}, "n must be"),
        ("/api/unclip/vary", {"file": red}, {"guidance": -1}, "guidance"),
        ("/api/unclip/interpolate", both, {"n": 1}, "n must be between 2"),
        ("/api/unclip/interpolate", {"a": red, "b": ("y.png", b"GIF89a", "image/gif")}, {}, "y.png"),
    ):
        response = client.post(url, files=files, data=data)
        assert response.status_code == 400 and message in response.json()["error"], (url, data, response.text)
    with with_unclip.busy:  # a job is running
        assert client.post("/api/unclip/vary", files={"file": red}).status_code == 409
    without = local(create_app(indexed[0], generation=generator))
    assert without.post("/api/unclip/vary", files={"file": red}).status_code == 404


def test_generate_with_dalle_streams_the_kept_pictures_best_first(indexed, generator):
    client = local(create_app(indexed[0], generation=generator))
    params = {"method": "dalle", "prompt": "a red circle", "samples": 5, "keep": 5, "guidance": 2, "seed": 1}
    lines = stream_lines(client.get("/api/generate", params=params))
    assert [x["type"] for x in lines] == ["frame"] * 5 + ["done"]
    scores = [x["clip_score"] for x in lines[:5]]
    assert scores == sorted(scores, reverse=True) and lines[-1]["clip_score"] == scores[0]
    assert _pixels(lines[-1]) == _pixels(lines[0]) and lines[-1]["name"] == "a-red-circle-1.png"  # the best
    for bad, message in (({"samples": 0}, "samples"), ({"guidance": -1}, "guidance"), ({"method": "x"}, "method")):
        response = client.get("/api/generate", params=params | bad)
        assert response.status_code == 400 and message in response.json()["error"]
    with_unclip = local(create_app(indexed[0], generation=with_unclip_model(generator)))
    assert with_unclip.get("/api/generate/status").json()["methods"] == ["vqgan-clip", "dalle", "unclip"]
    unclip = {"method": "unclip", "prompt": "a red circle", "samples": 2, "steps": 3}
    lines = stream_lines(with_unclip.get("/api/generate", params=unclip))
    assert [x["type"] for x in lines] == ["frame"] * 2 + ["done"] and _pixels(lines[-1]) == _pixels(lines[0])
    no_dalle = dataclasses.replace(generator, models={"vqgan-clip": generator.models["vqgan-clip"]})
    off = local(create_app(indexed[0], generation=no_dalle))
    assert off.get("/api/generate/status").json()["methods"] == ["vqgan-clip"]
    assert off.get("/api/generate", params=params).status_code == 404


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("PICTEXT_REQUIRE_BROWSER"),
    reason="no chromium here (make test installs Debian's and requires it)",
)
def test_the_generate_tab_in_a_real_browser(indexed, generator, serve, tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None, "PICTEXT_REQUIRE_BROWSER is set but chromium is not installed"
    base = serve(create_app(indexed[0], generation=generator))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(accept_downloads=True)
        page.goto(base + "/")
        page.click("#tab-generate")
        page.fill("#prompt", "a red circle")
        page.fill("#steps", "500")
        page.fill("#size", "32")
        page.click("#generate-run")
        page.wait_for_function("() => Number(document.getElementById('generate-status').dataset.frames) >= 2")
        assert page.eval_on_selector("#generate-frame", "img => img.naturalWidth") == 32  # frames really show
        page.click("#generate-cancel")
        page.wait_for_function("() => document.getElementById('generate-status').textContent === 'cancelled'")
        wait_until(lambda: not generator.busy.locked(), 30, "the server to stop the cancelled job")
        assert 25 < generator.last_run_steps < 500  # the job stopped when the page went away, not at its end
        page.fill("#steps", "3")
        page.click("#generate-run")
        page.wait_for_selector("#generate-download:not([hidden])")
        with page.expect_download() as download:
            page.click("#generate-download")
        saved = tmp_path / "download.png"
        download.value.save_as(saved)
        assert download.value.suggested_filename == "a-red-circle-0.png" and Image.open(saved).size == (32, 32)
        page.select_option("#method", "dalle")  # offered because the server has a DALL-E
        assert page.is_hidden("#steps") and page.is_visible("#samples")
        page.fill("#samples", "3")
        page.click("#generate-run")
        page.wait_for_function("() => document.getElementById('generate-status').textContent.startsWith('done')")
        assert page.eval_on_selector("#generate-frame", "img => img.naturalWidth") == 32
        assert page.is_hidden("#unclip-extra")
        browser.close()


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("PICTEXT_REQUIRE_BROWSER"),
    reason="no chromium here (make test installs Debian's and requires it)",
)
def test_unclip_variations_in_a_real_browser(indexed, generator, serve, tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None, "PICTEXT_REQUIRE_BROWSER is set but chromium is not installed"
    base = serve(create_app(indexed[0], generation=with_unclip_model(generator)))
    (tmp_path / "red.png").write_bytes(_png("red"))
    (tmp_path / "blue.png").write_bytes(_png("blue"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(base + "/")
        page.click("#tab-generate")
        page.select_option("#method", "unclip")
        assert page.is_visible("#vary-form") and page.is_visible("#interpolate-form")
        page.click("#vary-run")
        assert page.text_content("#unclip-error") == "choose the picture(s) first"
        page.set_input_files("#vary-file", str(tmp_path / "red.png"))
        page.fill("#vary-n", "3")
        page.click("#vary-run")
        page.wait_for_function("() => document.querySelectorAll('#unclip-results img').length === 3")
        assert page.eval_on_selector("#unclip-results img", "img => img.naturalWidth") == 8
        page.set_input_files("#interpolate-a", str(tmp_path / "red.png"))
        page.set_input_files("#interpolate-b", str(tmp_path / "blue.png"))
        page.fill("#interpolate-n", "5")
        page.click("#interpolate-run")
        page.wait_for_function("() => document.querySelectorAll('#unclip-results img').length === 5")
        assert page.text_content("#unclip-error") == ""
        browser.close()


@pytest.fixture
def slow_steps(monkeypatch):
    """Each token and diffusion step takes 20 ms more, as on a model of real size: jobs of seconds to minutes."""
    import importlib

    from pictext.generate.base import progress_check

    def slowed(callback, total):
        check = progress_check(callback, total)

        def slow() -> None:
            time.sleep(0.02)
            check()

        return slow

    for module in ("dalle", "unclip"):  # (pictext.generate, the attribute, is the function)
        monkeypatch.setattr(importlib.import_module(f"pictext.generate.{module}"), "progress_check", slowed)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "params"),
    [("dalle", {"samples": 64, "keep": 1}), ("unclip", {"samples": 8, "steps": 200})],  # about 20 s and 30 s
)
def test_a_job_stops_within_a_step_of_its_client_leaving_and_the_next_one_runs(
    indexed, generator, serve, slow_steps, name, params
):
    import http.client
    from urllib.parse import urlencode, urlsplit

    generation = with_unclip_model(generator)
    base = urlsplit(serve(create_app(indexed[0], generation=generation)))
    query = urlencode({"method": name, "prompt": "a red circle", **params})
    connection = http.client.HTTPConnection(base.hostname, base.port, timeout=30)
    connection.request("GET", f"/api/generate?{query}")
    assert connection.getresponse().status == 200
    time.sleep(1.0)
    assert generation.busy.locked()  # drawing
    connection.close()  # the page went away
    left = time.monotonic()
    wait_until(lambda: not generation.busy.locked(), 30, "the job to stop")
    assert time.monotonic() - left < 3.0 and generation.last_run_steps == 0  # stopped early, not at its end
    small = {"method": name, "prompt": "a red", "samples": 1} | ({"keep": 1} if name == "dalle" else {"steps": 2})
    small = urlencode(small)
    with urlopen(f"{base.geturl()}/api/generate?{small}", timeout=60) as response:
        assert json.loads(response.read().decode().splitlines()[-1])["type"] == "done"  # the slot is free again


@pytest.mark.slow
def test_a_job_that_runs_past_the_time_limit_is_stopped_and_says_why(indexed, generator, slow_steps):
    generation = dataclasses.replace(with_unclip_model(generator), time_limit=1.0)
    client = local(create_app(indexed[0], generation=generation))
    for name, params in (("dalle", {"samples": 64, "keep": 1}), ("unclip", {"samples": 8, "steps": 200})):
        start = time.monotonic()
        lines = stream_lines(client.get("/api/generate", params={"method": name, "prompt": "a red circle", **params}))
        assert lines[-1]["type"] == "cancelled" and "ran past the limit of 1 s" in lines[-1]["reason"], lines[-1]
        assert time.monotonic() - start < 3.0 and not generation.busy.locked()


def test_the_page_offers_the_classic_presets_defaults_for_a_published_vqgan(indexed):
    from pictext.server.app import Generation

    for vqgan, steps, cutouts in (("taming/imagenet-f16-16384", 500, 32), ("vqgan", 200, 48)):
        app = create_app(indexed[0], generation=Generation({"vqgan-clip": {"vqgan": vqgan}}))
        offered = local(app).get("/api/generate/status").json()["settings"]["vqgan-clip"]  # no model loads here
        assert (offered["steps"]["default"], offered["cutouts"]["default"]) == (steps, cutouts), vqgan
