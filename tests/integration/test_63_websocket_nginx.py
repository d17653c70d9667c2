"""WebSocket through nginx running the shipped config/nginx.conf (its /v1/ws/ location, docs/deploy.md):
the upgrade reaches apiary, text and binary echo come back in order, a close code crosses both hops,
and apiary sees nginx's X-Request-Id; pub/sub's GET /v1/topics/{topic}/ws is upgraded by the same
location (two subscribers through nginx get what one of them sends). Skipped when no nginx binary exists, as test_85_nginx is."""

import asyncio
import unittest

import websockets

import test_85_nginx as nginx_test
from apiary_harness import ApiaryAssertions, ApiaryServer, request


@unittest.skipUnless(nginx_test.NGINX, "nginx not installed (apt-get install -y nginx-light)")
class WebSocketThroughNginxTest(ApiaryAssertions, unittest.TestCase):
    def test_echo_through_the_sample_config(self):
        with ApiaryServer({}, threads=1) as server, nginx_test.Nginx(server.port) as proxy:
            async def go():
                url = f"ws://127.0.0.1:{proxy.port}/v1/ws/echo"
                async with websockets.connect(url, subprotocols=["echo"]) as ws:
                    self.assertEqual(ws.subprotocol, "echo")
                    self.assertTrue(ws.response_headers.get("X-Request-Id"))
                    burst = [f"n{i}" for i in range(50)] + [bytes([i]) * 300 for i in range(5)]
                    for m in burst:
                        await ws.send(m)
                    self.assertEqual([await ws.recv() for _ in burst], burst)
                    await ws.close(4002, "done")
                    self.assertEqual(ws.close_code, 4002)
            asyncio.run(asyncio.wait_for(go(), 30))
            server.assert_no_sanitizer_report()

    def test_topic_websocket_through_the_sample_config(self):
        with ApiaryServer({}, threads=2) as server, nginx_test.Nginx(server.port) as proxy:
            async def go():
                url = f"ws://127.0.0.1:{proxy.port}/v1/topics/nginx.room/ws"
                async with websockets.connect(url) as a, websockets.connect(url + "?mode=await") as b:
                    deadline = asyncio.get_running_loop().time() + 10
                    while "apiary_pubsub_subscribers 2" not in await asyncio.to_thread(self.metrics, server):
                        self.assertLess(asyncio.get_running_loop().time(), deadline, "never subscribed")
                        await asyncio.sleep(0.05)
                    await a.send('{"hi":1}')
                    self.assertEqual(await b.recv(), '{"hi":1}')
                    self.assertEqual(await a.recv(), '{"hi":1}')
            asyncio.run(asyncio.wait_for(go(), 30))
            server.assert_no_sanitizer_report()

    @staticmethod
    def metrics(server):
        with server.connect() as sock:
            return request(sock, "GET", "/metrics").body.decode()

    def test_plain_request_through_nginx_is_426(self):
        with ApiaryServer({}, threads=1) as server, nginx_test.Nginx(server.port) as proxy:
            with proxy.connect() as sock:
                sock.sendall(b"GET /v1/ws/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            self.assertTrue(data.startswith(b"HTTP/1.1 426 "), data[:200])


if __name__ == "__main__":
    unittest.main()
