"""A real WebSocket server and client (the `websockets` package) for the proxy's tunnel test.

    ws_echo.py server          echo server on a free loopback port; prints the port; exits
                               when its stdin closes (the test holds the pipe)
    ws_echo.py client URL      talks to URL: text, binary (1 MiB), 200 small messages, a
                               ping; checks every echo; closes cleanly; exit status 0 = all good.
                               A wss:// URL is verified against the CA file in $WS_CA.
"""

import asyncio
import os
import ssl
import sys

import websockets


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def server():
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None) as srv:
        port = srv.sockets[0].getsockname()[1]
        print(port, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


async def client(url):
    tls = {}
    if url.startswith("wss://"):
        tls["ssl"] = ssl.create_default_context(cafile=os.environ["WS_CA"])
    async with websockets.connect(url, max_size=None, open_timeout=10, close_timeout=10, **tls) as ws:
        await ws.send("hello through the gateway")
        assert await ws.recv() == "hello through the gateway"
        blob = os.urandom(1 << 20)
        await ws.send(blob)
        assert await ws.recv() == blob
        for i in range(200):
            await ws.send(f"message {i}")
        for i in range(200):
            assert await ws.recv() == f"message {i}"
        pong = await ws.ping()
        await asyncio.wait_for(pong, 10)
    print("ok", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(server())
    else:
        asyncio.run(asyncio.wait_for(client(sys.argv[2]), 30))
