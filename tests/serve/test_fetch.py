"""Image URLs: the address and host checks, redirects and limits, all with an injected
resolver and an in-memory transport, so no test touches a network."""

from __future__ import annotations

import asyncio
import ipaddress

import httpx2
import pytest

from ocelli.serve.errors import ApiError
from ocelli.serve.fetch import ImageFetcher, host_allowed, is_public_address

from .conftest import API_KEY, MODEL, image_part, png_bytes, start_server

# What the fake DNS answers; none of these names is ever looked up for real.
DNS = {
    "images.example.com": ["93.184.216.34"],
    "x.cdn.images.example.com": ["2606:2800:220:1:248:1893:25c8:1946"],
    "rebind.example.com": ["93.184.216.34", "10.0.0.7"],  # one public, one private answer
    "internal.example.com": ["10.1.2.3"],
    "metadata.example.com": ["169.254.169.254"],
    "mapped.example.com": ["::ffff:127.0.0.1"],
}
ALLOWED = (
    "images.example.com",
    "*.images.example.com",
    "internal.example.com",
    "rebind.example.com",
    "metadata.example.com",
    "mapped.example.com",
)


async def fake_resolver(host: str, port: int) -> list[str]:
    if host not in DNS:
        raise OSError(f"no such host {host}")
    return DNS[host]


def fetcher(handler, **options) -> ImageFetcher:
    settings = {"max_bytes": 100_000, "timeout_s": 2.0, "resolver": fake_resolver}
    return ImageFetcher(ALLOWED, transport=httpx2.MockTransport(handler), **{**settings, **options})


def fetch(fetcher: ImageFetcher, url: str) -> bytes:
    return asyncio.run(fetcher.fetch(url, "image"))


def refused(fetcher: ImageFetcher, url: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        fetch(fetcher, url)
    return caught.value


def serve_png(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, content=png_bytes(), headers={"content-type": "image/png"})


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::",
    ],
)
def test_non_public_addresses_are_refused(address):
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert is_public_address(ipaddress.ip_address(address))


def test_host_allowlist_patterns():
    patterns = ["images.example.com", "*.cdn.example.org"]
    assert host_allowed("IMAGES.example.com.", patterns)
    assert host_allowed("a.b.cdn.example.org", patterns)
    assert not host_allowed("cdn.example.org", patterns)  # the wildcard is for subdomains
    assert not host_allowed("evilimages.example.com", patterns)
    assert not host_allowed("images.example.com.evil.net", patterns)


def test_fetch_connects_to_the_checked_address_with_the_original_host():
    seen = []

    def handler(request):
        seen.append(request)
        return serve_png(request)

    assert fetch(fetcher(handler), "https://images.example.com/cat.png") == png_bytes()
    assert seen[0].url.host == "93.184.216.34"
    assert seen[0].headers["host"] == "images.example.com"
    assert seen[0].extensions["sni_hostname"] == "images.example.com"
    fetch(fetcher(handler), "http://x.cdn.images.example.com:8080/a.png")
    assert seen[1].url.host == "2606:2800:220:1:248:1893:25c8:1946"


@pytest.mark.parametrize(
    "url, code",
    [
        ("file:///etc/passwd", "image_url_scheme"),
        ("ftp://images.example.com/a.png", "image_url_scheme"),
        ("gopher://images.example.com/", "image_url_scheme"),
        ("http://user:pw@images.example.com/a.png", "image_url"),
        ("http://elsewhere.example.net/a.png", "image_url_host"),
        ("http://internal.example.com/a.png", "image_url_address"),
        ("http://metadata.example.com/latest/meta-data/", "image_url_address"),
        ("http://rebind.example.com/a.png", "image_url_address"),
        ("http://mapped.example.com/a.png", "image_url_address"),
        ("http://169.254.169.254/latest/meta-data/", "image_url_host"),
    ],
)
def test_refused_urls(url, code):
    def must_not_connect(request):
        raise AssertionError(f"connected to {request.url}")

    assert refused(fetcher(must_not_connect), url).code == code


def redirecting(*locations: str):
    """A handler answering each request with the next redirect, then a PNG."""
    remaining = list(locations)

    def handler(request):
        if remaining:
            return httpx2.Response(302, headers={"location": remaining.pop(0)})
        return serve_png(request)

    return handler


@pytest.mark.parametrize(
    "location, code",
    [
        ("http://internal.example.com/a.png", "image_url_address"),
        ("http://metadata.example.com/", "image_url_address"),
        ("http://127.0.0.1/a.png", "image_url_host"),
        ("http://elsewhere.example.net/a.png", "image_url_host"),
        ("file:///etc/passwd", "image_url_scheme"),
    ],
)
def test_redirects_are_checked_like_the_first_url(location, code):
    assert refused(fetcher(redirecting(location)), "http://images.example.com/a").code == code


def test_allowed_redirects_are_followed_up_to_the_limit():
    ok = fetcher(redirecting("/b", "https://x.cdn.images.example.com/c"))
    assert fetch(ok, "http://images.example.com/a") == png_bytes()
    loop = fetcher(redirecting(*["/again"] * 5), max_redirects=3)
    assert refused(loop, "http://images.example.com/a").code == "image_url_redirects"


def test_size_and_time_limits():
    big = fetcher(lambda r: httpx2.Response(200, content=b"x" * 200_000))
    error = refused(big, "http://images.example.com/big.png")
    assert (error.status, error.code) == (413, "image_too_large")

    async def slow(request):
        await asyncio.sleep(5)
        return serve_png(request)

    error = refused(fetcher(slow, timeout_s=0.2), "http://images.example.com/slow.png")
    assert error.code == "image_url_timeout"
    assert refused(fetcher(lambda r: httpx2.Response(404)), "http://images.example.com/x").code == (
        "image_url_status"
    )


def test_image_urls_through_the_api(pipeline, one_thread):
    allowed = fetcher(serve_png)
    with start_server(pipeline, fetcher=allowed) as live:

        def ask(url):
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": [image_part(url)]}],
                "max_tokens": 2,
            }
            headers = {"Authorization": f"Bearer {API_KEY}"}
            return httpx2.post(f"{live.url}/v1/chat/completions", json=body, headers=headers)

        assert ask("https://images.example.com/cat.png").status_code == 200
        for url in ("http://internal.example.com/x.png", "file:///etc/passwd"):
            response = ask(url)
            assert response.status_code == 400
            assert response.json()["error"]["param"] == "messages.0.content.0.image_url.url"
