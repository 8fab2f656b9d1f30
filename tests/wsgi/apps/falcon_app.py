"""A Falcon application under wsgiref.validate (see wsgi_validator.py), for
tests/wsgi/test_falcon.py: a second framework with its own request-body and streaming
code (req.bounded_stream, resp.stream), so the suite does not only know werkzeug's.
"""

import warnings

import falcon
from bodies import digest_stream

from wsgi_validator import WSGIWarning, validator

warnings.simplefilter("error", WSGIWarning)


class Items:
    def on_get(self, req, resp, item_id):
        resp.media = {"id": item_id, "q": req.get_param("q"), "tags": req.get_param_as_list("t")}

    def on_put(self, req, resp, item_id):
        body = req.get_media()
        resp.status = falcon.HTTP_201
        resp.media = {"id": item_id, "stored": body}
        resp.location = f"/items/{item_id}"


class Upload:
    def on_post(self, req, resp):
        # bounded_stream stops at Content-Length and so reads nothing of a chunked body;
        # then the server's own input (wsgi.input_terminated) is read to its end.
        stream = req.bounded_stream if req.content_length is not None else req.stream
        resp.media = digest_stream(stream.read, 16384)


class Stream:
    def on_get(self, req, resp):
        n = req.get_param_as_int("n", default=10)
        resp.content_type = falcon.MEDIA_TEXT
        resp.stream = (f"row {i}\n".encode() for i in range(n))


class Fail:
    def on_get(self, req, resp):
        raise falcon.HTTPForbidden(title="no", description="not for you")


class Empty:
    def on_delete(self, req, resp):
        resp.status = falcon.HTTP_204


app = falcon.App()
app.add_route("/items/{item_id}", Items())
app.add_route("/upload", Upload())
app.add_route("/stream", Stream())
app.add_route("/forbidden", Fail())
app.add_route("/empty", Empty())

application = validator(app)
