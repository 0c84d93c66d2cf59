"""The HTTP/2 (h2c, prior knowledge) worker behind tests/e2e/src/h2.rs.

Reads one JSON request per line on stdin and answers one JSON line on stdout:

  in:  {"addr": "127.0.0.1:10000",
        "headers": [[name, value], ...],   # pseudo-headers included, sent
        "body": "..."}                     # in exactly this order
  out: {"ok": true, "status": 200, "headers": [[name, value], ...], "body": "..."}
       {"ok": false, "error": "stream reset: PROTOCOL_ERROR"}

Bytes travel as Latin-1 strings (one char U+0000..U+00FF per byte), so any
byte sequence round-trips through JSON.

Every request gets its own connection, so a request Envoy refuses at the
protocol level cannot disturb the next. The `h2` library's outbound checks
and normalization are off: names, values, the method and the path go out as
the bytes the test chose (upper-case names, underscores, `\\t`, lower-case
methods), HPACK-encoded and nothing else. Every socket operation is bounded.
"""

import json
import socket
import sys

import h2.config
import h2.connection
import h2.events

TIMEOUT = 10.0


def code_name(code):
    return getattr(code, "name", str(code))


def exchange(req):
    host, port = req["addr"].rsplit(":", 1)
    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in req["headers"]]
    body = req.get("body", "").encode("latin-1")
    config = h2.config.H2Configuration(
        client_side=True,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
        split_outbound_cookies=False,
    )
    conn = h2.connection.H2Connection(config=config)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
        sock.settimeout(TIMEOUT)
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, headers, end_stream=not body)
        sent = 0

        def pump():
            # The body in frames the peer accepts, as far as its flow-control
            # windows allow; the rest when a WINDOW_UPDATE opens them.
            nonlocal sent
            while sent < len(body):
                n = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size, len(body) - sent)
                if n <= 0:
                    return
                conn.send_data(stream, body[sent:sent + n], end_stream=sent + n == len(body))
                sent += n

        pump()
        sock.sendall(conn.data_to_send())
        status, out_headers, data = None, [], bytearray()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return {"ok": False, "error": "connection closed before the response ended"}
            for event in conn.receive_data(chunk):
                if isinstance(event, h2.events.ResponseReceived):
                    for n, v in event.headers:
                        n, v = n.decode("latin-1"), v.decode("latin-1")
                        if n == ":status":
                            status = int(v)
                        else:
                            out_headers.append([n, v])
                elif isinstance(event, h2.events.DataReceived):
                    data.extend(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                    if sent < len(body) and status is None:
                        pump()
                elif isinstance(event, h2.events.StreamEnded):
                    return {
                        "ok": True,
                        "status": status,
                        "headers": out_headers,
                        "body": bytes(data).decode("latin-1"),
                    }
                elif isinstance(event, h2.events.StreamReset):
                    return {"ok": False, "error": f"stream reset: {code_name(event.error_code)}"}
                elif isinstance(event, h2.events.ConnectionTerminated):
                    return {"ok": False, "error": f"connection terminated (GOAWAY): {code_name(event.error_code)}"}
            pending = conn.data_to_send()
            if pending:
                sock.sendall(pending)


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = exchange(json.loads(line))
        except Exception as e:  # the test reads the reason; the worker goes on
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
