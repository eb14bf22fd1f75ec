#!/usr/bin/env python3
"""Scripted HTTP/1.1 (optionally HTTPS) test server for the rest_client tests.

Usage:
    http_test_server.py [--host 127.0.0.1] [--port 0]
                        [--tls-cert CERT --tls-key KEY [--client-ca CA [--client-cert-optional]]]
                        [--max-seconds 600]

Prints "PORT <n>" as its first stdout line once listening.  Exits after
--max-seconds, when stdin reaches EOF (keep stdin open as a pipe!), or on
SIGTERM/SIGINT.  Connections are keep-alive (HTTP/1.1) and handled one thread
each; every connection gets a sequential id (1, 2, ...).  Request bodies are
read by Content-Length or chunked encoding; "Expect: 100-continue" is answered
with "100 Continue" before the body is read.  Query strings are decoded as
latin-1, so %XX escapes give byte-exact header values.  Responses default to
Content-Type text/plain and carry a Content-Length unless chunked.

Routes (path before "?"):
  /status/<code>          status <code>, body "status <code>"
  /ctype?value=V[&name=N] 200 "ok" with header N (default Content-Type): V verbatim
  /body?size=N[&chunked=1][&pad=1][&ctype=V]
                          N bytes of the pattern 0-9a-z repeated; chunked=1 sends
                          chunks of <= 4096 bytes; pad=1 wraps the body as
                          "  \\r\\n" + body + "\\r\\n \\t"; ctype sets Content-Type
  /bytes?hex=H            200 with the bytes H (hex) as body, Content-Type
                          application/octet-stream
  /echo                   JSON {method, version, path, headers: [[name, value]...], body
                          (latin-1), body_len, connection_id, request_on_connection,
                          client_cert_subject, tls_session_reused (TLS only: client
                          cert CN or null; whether the connection resumed a TLS session)}
  /delay?ms=N[&size=M]    200 after N ms, body "delayed" (or M pattern bytes)
  /close                  200 "closing" with Connection: close, then close
  /close-after-response?ms=N
                          keep-alive 200 "ok", then close the socket N ms later
  /drop-next-request[?ms=N]
                          keep-alive 200 "ok" after N ms (default 0); the next request on
                          that connection is read and the connection closed without an answer
  /stall-headers          read the request, never answer (until client closes or 120 s)
  /stall-body?sent=K      Content-Length: 100000 + K, K (default 100) bytes, then stall
  /close-mid-body?sent=K  Content-Length: 100000 + K, K (default 100) bytes, then close
  /garbage                writes "this is not http\\r\\n\\r\\n" and closes
  /headers?h=Name:Value&h=...[&status=N][&reason=Text][&ms=N][&pad=P]
                          status N (default 200), each h sent as "Name: Value" in
                          order, then "X-Pad: " and P pattern bytes if pad is given,
                          body "headers"; after N ms (default 0)
  /unsolicited?ms=N       keep-alive 200 "ok", then N ms later (default 100) a second
                          complete response nobody asked for (200, body "SMUGGLED"); the
                          connection stays open and its next request is answered as usual
  /past-end[?chunked=1][&split=1]
                          keep-alive 200 "ok" (Content-Length: 2, or chunked) followed in the
                          same write by a complete second response (200, body "SMUGGLED");
                          split=1 sends the head first, alone, 20 ms before the rest
  /framing?cl=V[&cl=V...][&te=T][&size=N]
                          keep-alive 200 with one "Content-Length: V" line per cl, verbatim and
                          in order, "Transfer-Encoding: T" if te is given, then N (default 12)
                          pattern bytes, chunked when T is "chunked"
Hostile answers (each ends, at the latest, when the client closes or after 120 s):
  /slow-headers?ms=N      the status line, then a header line that never ends, one byte
                          every N ms (default 100)
  /slow-body?ms=N         Content-Length: 100000, then one body byte every N ms (default 100)
  /stall-mid-headers      the status line and half a header line, then nothing
  /huge-status?size=N     a status line with an N-byte reason (default 1 MiB), then "ok"
  /many-headers?count=N   N header lines (default 100000) of 16 bytes, then "ok"
  /endless-chunks?ms=N    a chunked body of 4096-byte chunks, one every N ms (default 0),
                          never the last chunk
  /interim-storm?ms=N     "102 Processing" interim responses, one every N ms (default 0),
                          never a final response
  /redirect-loop          302 with Location: /redirect-loop (and so on)
  /tls-bytes              a TLS handshake record (what a TLS server would send), then nothing
  /reset?after=W          a TCP reset (SO_LINGER 0, close) after reading the request
                          (W=request, the default), after the head of a 100000-byte answer
                          (W=headers) or after 10 of its body bytes (W=body)
  /stats                  JSON {connections, requests, open_connections, answering,
                          most_answering} (answering: requests being answered now;
                          most_answering: the most at once since the start or the reset)
  /stats/reset            zero connections, requests and most_answering, answer like /stats
  /fail?mode=M[&retry_after=V]
                          from now on every other request (but /stats*) fails: M=503 (or
                          any status) answers that status "failing", with "Retry-After: V"
                          if given, M=stall never answers, M=off ends it; answers "ok"
  anything else           404 "not found"
Requests to /stats* and /fail are not counted as requests.  HEAD responses and 1xx/204/304
statuses carry no body.
"""
import argparse
import http
import itertools
import json
import os
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

PATTERN = b"0123456789abcdefghijklmnopqrstuvwxyz"
LOCK = threading.Lock()
STATS = {"connections": 0, "requests": 0, "open_connections": 0, "answering": 0, "most_answering": 0}
CONNECTION_IDS = itertools.count(1)
SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\nSMUGGLED"
# The start of a TLS 1.2 ServerHello record: what a TLS server answers to a ClientHello.
TLS_RECORD = bytes.fromhex("160303003d0200003903035a") + bytes(52)
ITEM_VERSIONS = {}  # /items/<id>: how often each item was written
FAILING = {"mode": "off", "retry_after": None}  # /fail


class BadRequest(Exception):
    pass


def pattern(n):
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


def reason_for(code):
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


def stats_body():
    with LOCK:
        return json.dumps(STATS).encode()


class Request:
    def __init__(self, method, target, version, headers):
        self.method, self.target, self.version, self.headers = method, target, version, headers
        url = urlsplit(target)
        self.path = url.path
        self.query = parse_qs(url.query, keep_blank_values=True, encoding="latin-1")
        tokens = [t.strip().lower() for t in self.header("connection").split(",")]
        self.close = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
        self.body = b""

    def header(self, name):
        return next((v for n, v in self.headers if n.lower() == name), "")

    def arg(self, name, default=None):
        return self.query.get(name, [default])[0]

    def int_arg(self, name, default):
        try:
            return int(self.arg(name, default))
        except ValueError:
            raise BadRequest from None


class Connection:
    def __init__(self, sock, cid, tls):
        self.sock, self.cid, self.tls = sock, cid, tls
        self.buf = bytearray()
        self.requests = 0
        self.drop_next = False

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def read_until(self, sep):
        while (i := self.buf.find(sep)) < 0:
            self._fill()
        out = bytes(self.buf[:i])
        del self.buf[: i + len(sep)]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_chunked(self):
        body = bytearray()
        while True:
            try:
                size = int(self.read_until(b"\r\n").split(b";")[0].strip(), 16)
            except ValueError:
                raise BadRequest from None
            if size == 0:
                break
            body += self.read_exact(size)
            if self.read_exact(2) != b"\r\n":
                raise BadRequest
        while self.read_until(b"\r\n"):  # trailer fields, ignored
            pass
        return bytes(body)

    def read_request(self):
        lines = self.read_until(b"\r\n\r\n").lstrip(b"\r\n").decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
        except ValueError:
            raise BadRequest from None
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadRequest
            headers.append((name, value.strip(" \t")))
        req = Request(method, target, version, headers)
        if req.header("expect").lower() == "100-continue":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in req.header("transfer-encoding").lower():
            req.body = self.read_chunked()
        else:
            length = req.header("content-length") or "0"
            if not length.isdigit():
                raise BadRequest
            req.body = self.read_exact(int(length))
        return req

    def respond(self, req, status, body=b"", headers=(), reason=None, chunked=False, close=False):
        """Send one response; returns True when the connection stays open."""
        close = close or req.close
        bodiless_status = status < 200 or status in (204, 304)
        lines = [f"HTTP/1.1 {status} {reason_for(status) if reason is None else reason}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if not any(name.lower() == "content-type" for name, _ in headers):
            lines.append("Content-Type: text/plain")
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        elif not bodiless_status:
            lines.append(f"Content-Length: {len(body)}")
        if close:
            lines.append("Connection: close")
        payload = "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n"
        if req.method != "HEAD" and not bodiless_status:
            if chunked:
                chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
                payload += b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
            else:
                payload += body
        self.sock.sendall(payload)
        return not close

    def stall(self):
        """Keep the socket open until the client closes it or 120 s pass."""
        self.sock.settimeout(120)
        while self.sock.recv(65536):
            pass
        return False

    def dribble(self, data, ms):
        """Send `data` (an iterable of bytes) one byte every `ms` milliseconds; then stall."""
        for byte in data:
            self.sock.sendall(bytes([byte]))
            time.sleep(ms / 1000)
        return self.stall()

    def reset(self):
        """Close with a TCP reset instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    def hostile(self, req):
        """The answers of a broken or hostile server (see the module docstring); None for a
        path that is not one of them."""
        path, ms = req.path, req.int_arg("ms", 100 if req.path.startswith("/slow") else 0)
        ok_head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        if path == "/slow-headers":
            return self.dribble(ok_head + b"X-Slow: " + b"a" * 1000000, ms)
        if path == "/slow-body":
            self.sock.sendall(ok_head + b"Content-Length: 100000\r\n\r\n")
            return self.dribble(pattern(100000), ms)
        if path == "/stall-mid-headers":
            self.sock.sendall(ok_head + b"X-Half: th")
            return self.stall()
        if path == "/huge-status":
            reason = b"r" * req.int_arg("size", 1 << 20)
            self.sock.sendall(b"HTTP/1.1 200 " + reason + b"\r\nContent-Length: 2\r\n\r\nok")
            return True
        if path == "/many-headers":
            lines = b"".join(b"X-H%07d: v\r\n" % i for i in range(req.int_arg("count", 100000)))
            self.sock.sendall(ok_head + lines + b"Content-Length: 2\r\n\r\nok")
            return True
        if path == "/endless-chunks":
            self.sock.sendall(ok_head + b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"1000\r\n" + pattern(4096) + b"\r\n"
            while True:
                self.sock.sendall(chunk)
                time.sleep(ms / 1000)
        if path == "/interim-storm":
            while True:
                self.sock.sendall(b"HTTP/1.1 102 Processing\r\n\r\n")
                time.sleep(ms / 1000)
        if path == "/redirect-loop":
            return self.respond(req, 302, b"again", [("Location", "/redirect-loop")])
        if path == "/tls-bytes":
            self.sock.sendall(TLS_RECORD)
            return self.stall()
        if path == "/reset":
            after = req.arg("after", "request")
            if after in ("headers", "body"):
                self.sock.sendall(ok_head + b"Content-Length: 100000\r\n\r\n"
                                  + (pattern(10) if after == "body" else b""))
                time.sleep(0.05)
            return self.reset()
        return None

    def forged(self, req):
        """Answers with bytes nobody asked for, or with ambiguous framing (see the module
        docstring); None for a path that is not one of them."""
        path = req.path
        if path == "/unsolicited":
            self.respond(req, 200, b"ok")
            time.sleep(req.int_arg("ms", 100) / 1000)
            self.sock.sendall(SMUGGLED)
            return True
        if path == "/past-end":
            if req.arg("chunked") == "1":
                answer = b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
            else:
                answer = b"Content-Length: 2\r\n\r\nok"
            head, sep, body = answer.partition(b"\r\n\r\n")
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + head + sep
            if req.arg("split") == "1":
                # The head on its own (its own TLS record), so that the client reads the body
                # and what follows it separately.
                self.sock.sendall(head)
                time.sleep(0.02)
                head = b""
            self.sock.sendall(head + body + SMUGGLED)
            return True
        if path == "/framing":
            head = [f"Content-Length: {value}" for value in req.query.get("cl", [])]
            te = req.arg("te")
            if te is not None:
                head.append(f"Transfer-Encoding: {te}")
            body = pattern(req.int_arg("size", 12))
            if te == "chunked":
                body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            self.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                              + "".join(line + "\r\n" for line in head).encode("latin-1")
                              + b"\r\n" + body)
            return True
        return None

    def client_cn(self):
        for rdn in (self.sock.getpeercert() or {}).get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    return value
        return None

    def serve_one(self):
        """Handle one request; returns True to keep reading on this connection."""
        try:
            req = self.read_request()
            if self.drop_next:
                # /drop-next-request: read the request, then close without an answer, the way
                # a keep-alive timeout races with a client reusing the connection.
                return False
            self.requests += 1
            if req.path.startswith(("/stats", "/fail")):
                return self.dispatch(req)
            with LOCK:
                STATS["requests"] += 1
                STATS["answering"] += 1
                STATS["most_answering"] = max(STATS["most_answering"], STATS["answering"])
            try:
                return self.dispatch(req)
            finally:
                with LOCK:
                    STATS["answering"] -= 1
        except BadRequest:
            self.sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                              b"Content-Length: 11\r\nConnection: close\r\n\r\nbad request")
            return False

    def dispatch(self, req):
        path = req.path
        if path == "/fail":
            FAILING["mode"] = req.arg("mode", "off")
            FAILING["retry_after"] = req.arg("retry_after")
            return self.respond(req, 200, b"ok")
        if FAILING["mode"].isdigit() and not path.startswith("/stats"):
            retry_after = FAILING["retry_after"]
            headers = [("Retry-After", retry_after)] if retry_after is not None else []
            return self.respond(req, int(FAILING["mode"]), b"failing", headers)
        if FAILING["mode"] == "stall" and not path.startswith("/stats"):
            return self.stall()
        for special in (self.forged, self.hostile):
            kept = special(req)
            if kept is not None:
                return kept
        if path.startswith("/status/") and path[8:].isdigit():
            code = int(path[8:])
            return self.respond(req, code, b"status %d" % code)
        if path == "/ctype":
            return self.respond(req, 200, b"ok", [(req.arg("name", "Content-Type"), req.arg("value", ""))])
        if path == "/body":
            body = pattern(req.int_arg("size", 0))
            if req.arg("pad") == "1":
                body = b"  \r\n" + body + b"\r\n \t"
            headers = [("Content-Type", req.arg("ctype"))] if "ctype" in req.query else []
            return self.respond(req, 200, body, headers, chunked=req.arg("chunked") == "1")
        if path == "/bytes":
            try:
                body = bytes.fromhex(req.arg("hex", ""))
            except ValueError:
                raise BadRequest from None
            return self.respond(req, 200, body, [("Content-Type", "application/octet-stream")])
        if path == "/echo":
            doc = {"method": req.method, "version": req.version, "path": req.target, "headers": req.headers,
                   "body": req.body.decode("latin-1"), "body_len": len(req.body),
                   "connection_id": self.cid, "request_on_connection": self.requests}
            if self.tls:
                doc["client_cert_subject"] = self.client_cn()
                doc["tls_session_reused"] = self.sock.session_reused
            return self.respond(req, 200, json.dumps(doc).encode(), [("Content-Type", "application/json")])
        if path == "/delay":
            time.sleep(req.int_arg("ms", 0) / 1000)
            body = pattern(req.int_arg("size", 0)) if "size" in req.query else b"delayed"
            return self.respond(req, 200, body)
        if path == "/close":
            return self.respond(req, 200, b"closing", close=True)
        if path == "/drop-next-request":
            time.sleep(req.int_arg("ms", 0) / 1000)
            self.drop_next = True
            return self.respond(req, 200, b"ok")
        if path == "/close-after-response":
            delay = req.int_arg("ms", 0) / 1000
            self.respond(req, 200, b"ok")
            time.sleep(delay)
            return False
        if path == "/stall-headers":
            return self.stall()
        if path in ("/stall-body", "/close-mid-body"):
            sent = req.int_arg("sent", 100)
            self.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                              b"Content-Length: %d\r\n\r\n" % (100000 + sent) + pattern(sent))
            return self.stall() if path == "/stall-body" else False
        if path == "/garbage":
            self.sock.sendall(b"this is not http\r\n\r\n")
            return False
        if path == "/headers":
            time.sleep(req.int_arg("ms", 0) / 1000)
            headers = [tuple(h.partition(":")[::2]) for h in req.query.get("h", [])]
            if "pad" in req.query:
                headers.append(("X-Pad", pattern(req.int_arg("pad", 0)).decode()))
            return self.respond(req, req.int_arg("status", 200), b"headers", headers, reason=req.arg("reason"))
        if path == "/items" or path.startswith("/items/"):
            return self.items(req, path[len("/items/"):])
        if path == "/stats":
            return self.respond(req, 200, stats_body(), [("Content-Type", "application/json")])
        if path == "/stats/reset":
            with LOCK:
                STATS["connections"] = STATS["requests"] = 0
                STATS["most_answering"] = STATS["answering"]
            return self.respond(req, 200, stats_body(), [("Content-Type", "application/json")])
        return self.respond(req, 404, b"not found")

    def items(self, req, name):
        """A store of versioned items, for cache invalidation: GET /items/<id> reads one (after
        ?ms=N milliseconds);
        PUT, PATCH (409 with X-Fail) and DELETE write it; POST /items/<id>/touch writes it and
        names it in Content-Location; POST /items with body <id> writes it and names it in
        Location."""
        def write(item):
            with LOCK:
                ITEM_VERSIONS[item] = ITEM_VERSIONS.get(item, 0) + 1
        if req.method == "GET":
            time.sleep(req.int_arg("ms", 0) / 1000)
            with LOCK:
                version = ITEM_VERSIONS.get(name, 0)
            return self.json_reply(req, 200, {"id": name, "version": version})
        if req.header("x-fail"):
            return self.json_reply(req, 409, {"error": "conflict"})
        if req.method == "POST" and name == "":
            item = req.body.decode()
            write(item)
            return self.respond(req, 201, b"created", [("Location", f"/items/{item}")])
        if req.method == "POST" and name.endswith("/touch"):
            item = name[: -len("/touch")]
            write(item)
            return self.respond(req, 200, b"touched", [("Content-Location", f"/items/{item}")])
        write(name)
        return self.respond(req, 204 if req.method == "DELETE" else 200, b"written")

    def json_reply(self, req, status, doc):
        return self.respond(req, status, json.dumps(doc).encode(), [("Content-Type", "application/json")])


def serve_connection(sock, cid, ctx):
    try:
        if ctx is not None:
            sock = ctx.wrap_socket(sock, server_side=True)
        conn = Connection(sock, cid, ctx is not None)
        while conn.serve_one():
            pass
    except (OSError, EOFError):  # resets, broken pipes, TLS failures, timeouts
        pass
    finally:
        sock.close()
        with LOCK:
            STATS["open_connections"] -= 1


def accept_loop(listener, ctx):
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:
            time.sleep(0.01)
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with LOCK:
            cid = next(CONNECTION_IDS)
            STATS["connections"] += 1
            STATS["open_connections"] += 1
        threading.Thread(target=serve_connection, args=(sock, cid, ctx), daemon=True).start()


def watch_stdin(stop):
    try:
        while os.read(0, 65536):
            pass
    except OSError:
        pass
    stop.set()


def main():
    ap = argparse.ArgumentParser(description="Scripted HTTP/1.1 test server (see module docstring).")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--client-ca")
    ap.add_argument("--client-cert-optional", action="store_true")
    ap.add_argument("--max-seconds", type=float, default=600)
    args = ap.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key) or (args.client_ca and not args.tls_cert):
        ap.error("--tls-cert and --tls-key go together; --client-ca needs them")

    ctx = None
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            ctx.verify_mode = ssl.CERT_OPTIONAL if args.client_cert_optional else ssl.CERT_REQUIRED
            ctx.load_verify_locations(args.client_ca)

    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(128)
    print(f"PORT {listener.getsockname()[1]}", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=watch_stdin, args=(stop,), daemon=True).start()
    threading.Thread(target=accept_loop, args=(listener, ctx), daemon=True).start()
    stop.wait(args.max_seconds)
    os._exit(0)


if __name__ == "__main__":
    main()
