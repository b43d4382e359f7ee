"""A wasi:http handler in Python, built with componentize-py.

POST {"input": n} answers {"result": n + 1}; a request without a body answers
{"path": ..., "language": "python"}.

Build and deploy it (from this folder; `make setup` installs the pinned
componentize-py 0.25.1 as .tools/bin/componentize-py; wit/ is the WASI 0.2.12
WIT that ships with the wasmtime-wasi-http 48 crate):

    componentize-py -d wit -w wasi:http/proxy@0.2.12 bindings .
    componentize-py -d wit -w wasi:http/proxy@0.2.12 componentize app -o app.wasm
    nimbus deploy app.wasm --name py-hello --public
    curl -X POST http://127.0.0.1:8080/fn/<you>/py-hello -d '{"input": 41}'

The component is ~22 MB (the Python interpreter and its standard library);
compiling it takes ~20 s, once, at upload.
"""

import asyncio
import json

from componentize_py_types import Ok
from poll_loop import PollLoop, Sink, Stream
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        loop = PollLoop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(handle_async(request, response_out))


async def handle_async(request: IncomingRequest, response_out: ResponseOutparam) -> None:
    path = request.path_with_query() or "/"
    stream = Stream(request.consume())
    body = b""
    while True:
        chunk = await stream.next()
        if chunk is None:
            break
        body += chunk
    if body:
        answer = {"result": json.loads(body)["input"] + 1}
    else:
        answer = {"path": path, "language": "python"}
    response = OutgoingResponse(Fields.from_list([("content-type", b"application/json")]))
    out = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    sink = Sink(out)
    await sink.send(json.dumps(answer).encode())
    sink.close()

