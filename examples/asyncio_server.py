"""A server on the application's own event loop: its async handler awaits an
asyncio.Queue that another task of the same loop serves, which a handler on the
threaded server's private loop could not do.

    python examples/asyncio_server.py [IPC_DIR]      (Ctrl-C stops it)
"""

import asyncio
import sys

import tiga_cffi


async def main(ipc_dir):
    jobs: asyncio.Queue = asyncio.Queue()

    async def worker():  # another task of this loop
        while True:
            text, done = await jobs.get()
            done.set_result(text[::-1])

    async def handle(method, data, context):
        done = asyncio.get_running_loop().create_future()
        await jobs.put((str(data), done))
        return await done

    task = asyncio.ensure_future(worker())
    async with tiga_cffi.create_tiga_server("reverse", ipc_dir, handle) as server:
        print(f"serving 'reverse' in {server.ipc_directory}", flush=True)
        await asyncio.Event().wait()  # until Ctrl-C
    task.cancel()


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ipc"))
    except KeyboardInterrupt:
        pass
