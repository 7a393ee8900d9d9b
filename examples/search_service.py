"""
Title: Serving image search with a metrix_tf model
Author: metrix-tf contributors
Date created: 2026/12/06
Last modified: 2026/12/06
Description: A small HTTP service that embeds a posted image and returns its nearest neighbours.
Accelerator: None
"""

"""
## Introduction

A metric-learning model is served as nearest-neighbour search: the gallery is
embedded once into an index, and each query image is embedded and looked up.
This example serves an index built by `metrix-index build` with the SavedModel
`metrix-export` wrote:

- `POST /search` with an image (JPEG, PNG, GIF or BMP bytes, `Content-Type:
  image/...` or `application/octet-stream`) answers its neighbours as JSON;
  `?k=10` asks for 10 of them (default 5).
- `GET /health` answers the index's size.

Bad requests get a 4xx answer with a JSON `error` and the service goes on:
400 for a body that is not an image or a bad `k`, 404 for an unknown path,
411 without a length, 413 for a body over `--max_bytes`, 415 for another
content type.

It uses the standard library's `http.server` (`ThreadingHTTPServer`, a
thread per connection): a service this small needs no framework, and the
example runs wherever metrix_tf does. Put it behind a production server
(TLS, authentication, process supervision) before exposing it.

Run it with:

```shell
metrix-index build --saved_model=metrix_run/saved_model --images=photos --output=photos_index
python examples/search_service.py --saved_model=metrix_run/saved_model \\
    --index=photos_index --port=8000
curl -s --data-binary @query.jpg -H "Content-Type: image/jpeg" localhost:8000/search?k=3
```
"""

"""
## Setup
"""

import argparse
import http.server
import json
import sys
import threading
import urllib.parse

from metrix_tf.retrieval import Searcher

"""
## The request handler

One `Searcher` (the SavedModel and the index) is shared by all request
threads; a lock lets one lookup run at a time, so concurrent requests never
interleave inside the index. Every answer is JSON; any failure of one request
becomes its error answer, never the end of the service.
"""

CONTENT_TYPES = ("image/", "application/octet-stream")


class SearchHandler(http.server.BaseHTTPRequestHandler):
    searcher = None  # set by `serve`
    max_bytes = 10 * 2**20
    lock = threading.Lock()

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, message):
        self.answer(status, {"error": message})

    def do_GET(self):
        if urllib.parse.urlsplit(self.path).path != "/health":
            return self.error(404, f"unknown path {self.path!r}: GET /health, POST /search")
        index = self.searcher.search_index
        self.answer(200, {"status": "ok", "count": len(index), "dimension": index.dimension,
                          "kind": index.kind})

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/search":
            return self.error(404, f"unknown path {self.path!r}: GET /health, POST /search")
        content_type = self.headers.get("Content-Type", "")
        if not content_type.startswith(CONTENT_TYPES):
            return self.error(415, f"Content-Type must be image/* or application/octet-stream, "
                                   f"not {content_type!r}")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            return self.error(411, "a Content-Length is required")
        if int(length) > self.max_bytes:
            # The body is not read: drop the connection after answering.
            self.close_connection = True
            return self.error(413, f"the image has {length} bytes; at most {self.max_bytes}")
        try:
            k = int(urllib.parse.parse_qs(url.query).get("k", ["5"])[0])
            if not 1 <= k <= 1000:
                raise ValueError
        except ValueError:
            return self.error(400, "k must be an integer in [1, 1000]")
        body = self.rfile.read(int(length))
        try:
            with self.lock:
                neighbours = self.searcher.neighbours(body, k)
        except ValueError as error:  # not an image, or one that does not decode
            return self.error(400, str(error))
        except Exception as error:  # noqa: BLE001  (one request fails, the service stays)
            return self.error(500, f"{type(error).__name__}: {error}")
        self.answer(200, {"neighbours": neighbours})


"""
## Starting the service

`--port=0` picks a free port; the service prints the address it listens on
as its first line, so a script (or a test) can find it.
"""


def serve(saved_model, index, host="127.0.0.1", port=8000, max_bytes=10 * 2**20):
    SearchHandler.searcher = Searcher(saved_model, index)
    SearchHandler.max_bytes = max_bytes
    server = http.server.ThreadingHTTPServer((host, port), SearchHandler)
    print(f"serving on http://{host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve image search over HTTP.")
    parser.add_argument("--saved_model", required=True, help="the SavedModel (metrix-export's)")
    parser.add_argument("--index", required=True, help="the index (metrix-index build's)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0: any free port")
    parser.add_argument("--max_bytes", type=int, default=10 * 2**20,
                        help="the largest image accepted")
    args = parser.parse_args()
    try:
        serve(args.saved_model, args.index, args.host, args.port, args.max_bytes)
    except (ValueError, OSError) as error:  # a bad model or index, a port in use
        sys.exit(f"search_service: error: {error}")
