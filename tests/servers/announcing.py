"""A uvicorn server that says when it is ready, for the test servers started on port 0."""

import socket

import uvicorn


class AnnouncingServer(uvicorn.Server):
    """Prints `LISTENING <port>` (flushed) only once uvicorn really accepts connections."""

    def __init__(self, config: uvicorn.Config, port: int) -> None:
        super().__init__(config)
        self.port = port

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        print(f"LISTENING {self.port}", flush=True)
