#!/usr/bin/env python3
"""The digest of every pushed stage image, read from the registry's own HTTP API.

    images/digests.py REGISTRY TAG [FAMILY ...]
        one line per family: ADG_IMAGE_<FAMILY>=REGISTRY/adg-<family>@sha256:...
    images/digests.py --sizes REGISTRY TAG [FAMILY ...]
        one JSON line per family: its digest and the sizes of its layers as stored

`REGISTRY` is what `make push` pushed to (`ghcr.io/<owner>`, `127.0.0.1:5000/adg`). For each
family the manifest of `adg-<family>:TAG` is asked for (`HEAD /v2/<name>/manifests/<tag>`, with
the OCI and Docker manifest and index media types in `Accept`); the registry answers with the
digest of what it stores (`Docker-Content-Digest`), which is what a node pulls when the pipeline
names `name@sha256:...`. The local image store is never consulted: a digest there can differ
from the registry's (a push recompresses the layers).

Authentication is the distribution spec's: a 401 with `WWW-Authenticate: Bearer realm=...` is
answered with a token from that realm (anonymous, or with REGISTRY_USERNAME/REGISTRY_PASSWORD:
on GitHub Actions the actor and GITHUB_TOKEN for ghcr.io); `Basic` with the same pair.
127.0.0.1 and localhost are spoken to over plain HTTP (a loopback test registry), any other host
over HTTPS; REGISTRY_PLAIN_HTTP=1 forces HTTP. Standard library only: it runs before any
virtual environment exists. Exits 2 with one line naming the image on any failure.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

FAMILIES = ("cpu", "generate", "train", "eval")
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = MANIFEST_TYPES[0], MANIFEST_TYPES[2]


class RegistryError(Exception):
    pass


def split_registry(registry: str) -> tuple[str, str]:
    """'ghcr.io/owner' -> ('ghcr.io', 'owner'); '127.0.0.1:5000' -> ('127.0.0.1:5000', '')."""
    host, _, namespace = registry.strip("/").partition("/")
    if not host or ("." not in host and ":" not in host and host != "localhost"):
        raise RegistryError(f"REGISTRY={registry!r}: expected a registry host, e.g. ghcr.io/owner")
    return host, namespace


def base_url(host: str) -> str:
    plain = os.environ.get("REGISTRY_PLAIN_HTTP") == "1" or host.split(":")[0] in (
        "127.0.0.1",
        "localhost",
    )
    return f"{'http' if plain else 'https'}://{host}"


def credentials() -> str | None:
    user, password = os.environ.get("REGISTRY_USERNAME"), os.environ.get("REGISTRY_PASSWORD")
    if user and password:
        return base64.b64encode(f"{user}:{password}".encode()).decode()
    return None


class Client:
    """Just enough of the distribution API: manifests by tag or digest, token auth."""

    def __init__(self, host: str):
        self.base = base_url(host)
        self.auth: dict[str, str] = {}  # repository -> Authorization header value

    def request(self, method: str, repo: str, reference: str, accept: tuple[str, ...]):
        url = f"{self.base}/v2/{repo}/manifests/{reference}"
        for attempt in (1, 2):
            headers = {"Accept": ", ".join(accept)}
            if repo in self.auth:
                headers["Authorization"] = self.auth[repo]
            req = urllib.request.Request(url, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    return resp.headers, resp.read()
            except urllib.error.HTTPError as err:
                if err.code == 401 and attempt == 1:
                    self.auth[repo] = self.authorize(err.headers.get("WWW-Authenticate", ""), repo)
                    continue
                raise RegistryError(f"{method} {url}: HTTP {err.code} {err.reason}") from None
            except (urllib.error.URLError, OSError) as err:
                raise RegistryError(f"{method} {url}: {err}") from None
        raise RegistryError(f"{method} {url}: refused after authenticating")

    def authorize(self, challenge: str, repo: str) -> str:
        scheme, _, params = challenge.partition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        basic = credentials()
        if scheme.lower() == "basic":
            if not basic:
                raise RegistryError(f"{self.base}: needs REGISTRY_USERNAME and REGISTRY_PASSWORD")
            return f"Basic {basic}"
        if scheme.lower() != "bearer" or "realm" not in fields:
            raise RegistryError(f"{self.base}: unsupported authentication {challenge!r}")
        query = {"service": fields.get("service", ""), "scope": f"repository:{repo}:pull"}
        url = f"{fields['realm']}?{urllib.parse.urlencode(query)}"
        req = urllib.request.Request(
            url, headers={"Authorization": f"Basic {basic}"} if basic else {}
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                body = json.load(resp)
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise RegistryError(f"token for {repo} from {fields['realm']}: {err}") from None
        token = body.get("token") or body.get("access_token")
        if not token:
            raise RegistryError(f"token for {repo} from {fields['realm']}: none in the answer")
        return f"Bearer {token}"

    def digest(self, repo: str, tag: str) -> str:
        headers, _ = self.request("HEAD", repo, tag, MANIFEST_TYPES)
        digest = headers.get("Docker-Content-Digest", "")
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise RegistryError(f"{repo}:{tag}: the registry gave no digest ({digest!r})")
        return digest

    def manifest(self, repo: str, reference: str) -> dict:
        """The image manifest; for an index, the linux/amd64 one's."""
        headers, body = self.request("GET", repo, reference, MANIFEST_TYPES)
        manifest = json.loads(body)
        media = manifest.get("mediaType") or headers.get("Content-Type", "")
        if media in INDEX_TYPES:
            amd64 = [
                m
                for m in manifest.get("manifests", [])
                if m.get("platform", {}).get("os") == "linux"
                and m.get("platform", {}).get("architecture") == "amd64"
            ]
            if not amd64:
                raise RegistryError(f"{repo}@{reference}: no linux/amd64 image in the index")
            return self.manifest(repo, amd64[0]["digest"])
        return manifest


def main(argv: list[str]) -> int:
    sizes = "--sizes" in argv
    args = [a for a in argv if a != "--sizes"]
    if len(args) < 2:
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    registry, tag, families = args[0], args[1], args[2:] or list(FAMILIES)
    try:
        host, namespace = split_registry(registry)
        client = Client(host)
        for family in families:
            repo = f"{namespace}/adg-{family}" if namespace else f"adg-{family}"
            digest = client.digest(repo, tag)
            if sizes:
                layers = client.manifest(repo, digest).get("layers", [])
                line = {
                    "family": family,
                    "reference": f"{host}/{repo}@{digest}",
                    "layers": len(layers),
                    "compressed_bytes": sum(int(layer["size"]) for layer in layers),
                    "largest_layers": sorted(int(layer["size"]) for layer in layers)[::-1][:3],
                }
                sys.stdout.write(json.dumps(line) + "\n")
            else:
                sys.stdout.write(f"ADG_IMAGE_{family.upper()}={host}/{repo}@{digest}\n")
    except RegistryError as err:
        sys.stderr.write(f"images/digests.py: {err}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
