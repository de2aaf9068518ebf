"""Invoking from asyncio: several calls in flight, the event loop never blocked.

    python examples/asyncio_client.py [IPC_DIR]     (needs examples/echo_server.py running)
"""

import asyncio
import sys

import tiga_cffi


async def main(ipc_dir):
    with tiga_cffi.Client("echo", ipc_directory=ipc_dir, timeout=10) as client:
        replies = await asyncio.gather(*(client.invoke_async("echo", f"call {i}")
                                         for i in range(5)))
        for r in replies:
            print(r)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ipc"))
