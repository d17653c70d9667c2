"""bench/ws.sh's aiohttp peer: GET /v1/ws/echo echoes every text and binary message (one process,
the default asyncio loop), and GET /v1/hello answers for the readiness poll. Usage: aiohttp_ws.py PORT"""
import sys

from aiohttp import WSMsgType, web


async def hello(request):
    return web.json_response({"message": "Hello, World!"})


async def echo(request):
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1 << 20)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
    return ws


app = web.Application()
app.router.add_get("/v1/hello", hello)
app.router.add_get("/v1/ws/echo", echo)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
