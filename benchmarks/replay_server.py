"""A stdio MCP server that answers from a recording, at once: the floor of `child_cost`.

    python -S -I benchmarks/replay_server.py WIRE_IN WIRE_OUT

WIRE_IN and WIRE_OUT are what a real server's session carried (the probe's `tee`
files: the client's lines, the server's lines). Each request gets the result the
recorded server gave the first request of the same method, under the new request's
id; `subscriptions/listen` gets its acknowledgement and stays open, as a real server
keeps it; any other method gets "method not found". No SDK, no service, no work: what
a registered server costs a `claude -p` child when answering costs nothing but a
Python start (`-S -I`: no site, so only the stdlib) and `json`.
"""

import json
import sys

ACK = "notifications/subscriptions/acknowledged"


def load(wire_in: str, wire_out: str) -> tuple[dict[str, object], dict[str, object] | None]:
    with open(wire_in) as f:
        sent = [json.loads(line) for line in f if line.strip()]
    with open(wire_out) as f:
        got = [json.loads(line) for line in f if line.strip()]
    methods = {message["id"]: message.get("method") for message in sent if "id" in message}
    results: dict[str, object] = {}
    for message in got:
        if "id" in message and "result" in message:
            results.setdefault(methods.get(message["id"]), message["result"])
    ack = next((message for message in got if message.get("method") == ACK), None)
    return results, ack


def answer(message: dict[str, object], results: dict[str, object], ack: dict | None) -> dict:
    method = message.get("method")
    if method == "subscriptions/listen" and ack is not None:
        subscription = {"io.modelcontextprotocol/subscriptionId": message["id"]}
        params = dict(ack["params"], _meta=subscription)
        return dict(ack, params=params)
    if method in results:
        return {"jsonrpc": "2.0", "id": message["id"], "result": results[method]}
    error = {"code": -32601, "message": f"not in the recording: {method}"}
    return {"jsonrpc": "2.0", "id": message["id"], "error": error}


def main() -> None:
    results, ack = load(sys.argv[1], sys.argv[2])
    for line in sys.stdin:
        message = json.loads(line)
        if "id" in message and "method" in message:  # notifications need no answer
            sys.stdout.write(json.dumps(answer(message, results, ack)) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
