"""A TCP relay for fault tests: forwards loopback connections to a target,
optionally delaying every chunk (replication lag), and can turn every flow
it already carries into a black hole (kept open, nothing forwarded either
way), as a NAT or firewall that silently dropped them would. Flows opened
afterwards are forwarded normally."""
import collections
import selectors
import socket
import threading
import time

from conftest import free_port


class Relay:
    def __init__(self, target_port, delay=0.0):
        self.delay = delay
        self.due = collections.deque()   # (time, peer socket, data), in order
        self.port = free_port()
        self.target = ("127.0.0.1", target_port)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(512)
        self.lsock.setblocking(False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.lsock, selectors.EVENT_READ, None)
        self.flows = {}          # socket -> [peer socket, blackholed]
        self.lock = threading.Lock()
        self.stopping = False
        self.accepted = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def blackhole(self):
        """Every current flow stops forwarding, in both directions."""
        with self.lock:
            for flow in self.flows.values():
                flow[1] = True

    def _close(self, s):
        flow = self.flows.pop(s, None)
        try:
            self.sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()
        if flow and flow[0] in self.flows:
            self._close(flow[0])

    def _send(self, peer, data):
        try:
            peer.setblocking(True)
            peer.sendall(data)
            peer.setblocking(False)
        except OSError:
            self._close(peer)

    def _flush_due(self):
        now = time.monotonic()
        while self.due and self.due[0][0] <= now:
            _, peer, data = self.due.popleft()
            if peer in self.flows:
                self._send(peer, data)

    def _run(self):
        while not self.stopping:
            with self.lock:
                self._flush_due()
                wait = 0.05 if not self.due else max(0.0, min(0.05, self.due[0][0] - time.monotonic()))
            for key, _ in self.sel.select(timeout=wait):
                s = key.fileobj
                with self.lock:
                    if s is self.lsock:
                        self._accept()
                    elif s in self.flows:
                        self._pump(s)

    def _accept(self):
        try:
            c, _ = self.lsock.accept()
        except BlockingIOError:
            return
        try:
            u = socket.create_connection(self.target, timeout=1)
        except OSError:
            c.close()
            return
        self.accepted += 1
        for a, b in ((c, u), (u, c)):
            a.setblocking(False)
            self.flows[a] = [b, False]
            self.sel.register(a, selectors.EVENT_READ, None)

    def _pump(self, s):
        peer, holed = self.flows[s]
        try:
            data = s.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            if not holed:
                self._close(s)
            else:
                self.sel.unregister(s)   # a black hole says nothing, not even FIN
            return
        if holed:
            return
        if self.delay:
            self.due.append((time.monotonic() + self.delay, peer, data))
            return
        self._send(peer, data)

    def close(self):
        self.stopping = True
        self.thread.join(2)
        with self.lock:
            for s in list(self.flows):
                s.close()
            self.flows.clear()
        self.lsock.close()
