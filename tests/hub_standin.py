"""A local stand-in of the Hugging Face hub: a threading HTTP server on 127.0.0.1 that the REAL clients
(huggingface_hub, and through it datasets and timm) talk to when HF_ENDPOINT points at it.

It serves the few routes those clients call, as the hub answers them:

* `GET /api/{datasets,models}/{repo}/revision/{rev}` (`HfApi.dataset_info` / `model_info`, with
  `?blobs=true` for file sizes): id, sha, siblings [{rfilename, size, blobId}];
* `HEAD|GET /[datasets/]{repo}/resolve/{rev}/{path}` (`hf_hub_download`, `hf_hub_url`): the bytes, with
  X-Repo-Commit, ETag / X-Linked-Etag, X-Linked-Size, Content-Length, and `Range: bytes=a-b` / `bytes=-n`
  answered 206 (parquet footers are read that way);
* `GET /api/datasets/{repo}/tree/{rev}[/path]` and `POST /api/datasets/{repo}/paths-info/{rev}` (listings).

A revision is a commit sha or a branch of `refs`; anything else is a 404 with the hub's error header,
so a client sees what it would see on the hub. Every request is logged (method, path, Range) in
`requests`, which is how the tests assert what was fetched.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


@dataclass
class Repo:
    """One repository: branches -> commit sha, commit sha -> {path: bytes}."""

    refs: dict[str, str]
    commits: dict[str, dict[str, bytes]]

    def commit(self, rev: str) -> str | None:
        rev = unquote(rev)
        if rev in self.commits:
            return rev
        return self.refs.get(rev)


@dataclass
class Hub:
    repos: dict[tuple[str, str], Repo] = field(default_factory=dict)  # (kind "datasets"|"models", repo id)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, kind: str, repo_id: str, sha: str, files: dict[str, bytes], branches=("main",)) -> None:
        repo = self.repos.setdefault((kind, repo_id), Repo({}, {}))
        repo.commits[sha] = dict(files)
        for b in branches:
            repo.refs[b] = sha

    def fetched(self, repo_id: str, kind: str = "datasets", full_only: bool = True) -> list[str]:
        """Paths whose bytes were fetched by GET (full reads only, unless full_only=False)."""
        prefix = f"/{kind}/{repo_id}/resolve/" if kind == "datasets" else f"/{repo_id}/resolve/"
        out = []
        for method, path, rng in self.requests:
            if method == "GET" and path.startswith(prefix) and (rng is None or not full_only):
                out.append(path[len(prefix):].split("/", 1)[1])
        return out

    def start(self, port: int = 0, sock=None) -> "Hub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _error(self, code: int, message: str, head: bool = False, kind: str = "EntryNotFound"):
                body = json.dumps({"error": message}).encode()
                self._send(code, body, {"Content-Type": "application/json", "X-Error-Code": kind,
                                        "X-Error-Message": message}, head)

            def _handle(self, head: bool = False):
                parsed = urlparse(self.path)
                path = unquote(parsed.path)
                hub.requests.append((self.command, path, self.headers.get("Range")))
                m = re.fullmatch(r"/api/(datasets|models)/([^/]+/[^/]+)/revision/(.+)", path)
                if m:
                    return self._info(m[1], m[2], m[3], parse_qs(parsed.query), head)
                m = re.fullmatch(r"/api/(datasets|models)/([^/]+/[^/]+)/(tree|paths-info)/([^/]+)(?:/(.*))?", path)
                if m:
                    return self._tree(m[1], m[2], m[4], m[5] or "", head)
                m = re.fullmatch(r"/(?:(datasets)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if m:
                    return self._file(m[1] or "models", m[2], m[3], m[4], head)
                return self._error(404, f"no route {path}", head, "RouteNotFound")

            def _repo(self, kind, repo_id, rev, head):
                repo = hub.repos.get((kind, repo_id))
                if repo is None:
                    self._error(404, "Repository not found", head, "RepoNotFound")
                    return None, None
                sha = repo.commit(rev)
                if sha is None:
                    self._error(404, f"Invalid rev id: {rev}", head, "RevisionNotFound")
                    return None, None
                return repo, sha

            def _info(self, kind, repo_id, rev, query, head):
                repo, sha = self._repo(kind, repo_id, rev, head)
                if repo is None:
                    return
                files = repo.commits[sha]
                siblings = [{"rfilename": p, "size": len(b), "blobId": hashlib.sha1(b).hexdigest()}
                            for p, b in sorted(files.items())]
                body = {"id": repo_id, "_id": repo_id, "sha": sha, "private": False, "gated": False,
                        "disabled": False, "siblings": siblings, "tags": [], "cardData": {},
                        "lastModified": "2023-06-16T00:00:00.000Z", "createdAt": "2023-04-01T00:00:00.000Z"}
                self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"}, head)

            def _tree(self, kind, repo_id, rev, sub, head):
                repo, sha = self._repo(kind, repo_id, rev, head)
                if repo is None:
                    return
                items = [{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                         for p, b in sorted(repo.commits[sha].items()) if not sub or p.startswith(sub.rstrip("/") + "/")]
                self._send(200, json.dumps(items).encode(), {"Content-Type": "application/json"}, head)

            def _file(self, kind, repo_id, rev, fpath, head):
                repo, sha = self._repo(kind, repo_id, rev, head)
                if repo is None:
                    return
                data = repo.commits[sha].get(fpath)
                if data is None:
                    return self._error(404, f"Entry not found: {fpath}", head)
                etag = hashlib.sha256(data).hexdigest()
                headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "X-Linked-Etag": f'"{etag}"',
                           "X-Linked-Size": len(data), "Accept-Ranges": "bytes",
                           "Content-Type": "application/octet-stream"}
                rng = self.headers.get("Range")
                if rng and not head:
                    m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
                    if m:
                        n = len(data)
                        if m[1] == "":
                            start, end = max(n - int(m[2]), 0), n - 1
                        else:
                            start, end = int(m[1]), min(int(m[2]) if m[2] else n - 1, n - 1)
                        headers["Content-Range"] = f"bytes {start}-{end}/{n}"
                        return self._send(206, data[start:end + 1], headers)
                self._send(200, data, headers, head)

            def do_GET(self):
                self._handle()

            def do_HEAD(self):
                self._handle(head=True)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self._handle()

        if sock is not None:
            self.server = ThreadingHTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
            self.server.socket.close()
            self.server.socket = sock
            self.server.server_activate()
        else:
            self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# ------------------------------------------------------------------------------------------------
# A miniature ImageNet-Hard in the real layout
# ------------------------------------------------------------------------------------------------
HARD_REPO = "taesiri/imagenet-hard"
#: Rows per file of the miniature: the real split's 10,980 rows in 9 files (1,220 each), with tiny images.
HARD_FILE_ROWS = (1220,) * 9


def hard_parquet_files(rows_per_file=HARD_FILE_ROWS, seed: int = 0, n_distinct: int = 16) -> dict[str, bytes]:
    """{repo path: parquet bytes} of a miniature ImageNet-Hard: data/validation-0000k-of-0000n-<hash>.parquet,
    with the real schema (written by `datasets`, so the hub's feature metadata is in the files):
    image Image() {bytes, path}, label list<int64> (1..3 ImageNet-1k indices), origin string,
    english_label list<string>. Images are small PNGs (16 distinct ones, 12..40 px), repeated."""
    import io

    import datasets
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pngs = []
    for i in range(n_distinct):
        w, h = int(rng.integers(12, 41)), int(rng.integers(12, 41))
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
        pngs.append(buf.getvalue())
    origins = ("imagenet", "imagenet_a", "imagenet_r", "imagenet_sketch", "imagenet_v2", "objectnet")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Sequence(datasets.Value("int64")),
                                  "origin": datasets.Value("string"),
                                  "english_label": datasets.Sequence(datasets.Value("string"))})
    out, row, n = {}, 0, len(rows_per_file)
    for k, count in enumerate(rows_per_file):
        images, labels, origin, english = [], [], [], []
        for _ in range(count):
            images.append({"bytes": pngs[row % n_distinct], "path": f"{row}.png"})
            lab = sorted({int(v) for v in rng.integers(0, 1000, int(rng.integers(1, 4)))})
            labels.append(lab)
            origin.append(origins[row % len(origins)])
            english.append([f"class {v}" for v in lab])
            row += 1
        ds = datasets.Dataset.from_dict({"image": images, "label": labels, "origin": origin, "english_label": english},
                                        features=features)
        buf = io.BytesIO()
        ds.to_parquet(buf)
        data = buf.getvalue()
        out[f"data/validation-{k:05d}-of-{n:05d}-{hashlib.sha1(data).hexdigest()[:16]}.parquet"] = data
    return out
