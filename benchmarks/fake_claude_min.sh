#!/bin/sh
# The benchmarks' fake `claude`: as cheap to start as a process can be without a
# compiler (dash, builtins only on the latency-0 path), answering like the real
# CLI (../shared/CLAUDE_CLI.md) after $BENCH_LATENCY_MS milliseconds.
#
#   --output-format json                   one result line
#   --output-format stream-json --verbose  system init, one assistant line, the result line
#   --session-id ID / --resume ID          echoed back as session_id (else a fresh UUID)
#   --version                              a version line
#
# Environment (all optional):
#   BENCH_LATENCY_MS   wait this long before answering (default 0: no sleep at all)
#   BENCH_EVENTS       a FIFO (or file): appends "+ PID" at start and "- PID" at exit,
#                      one atomic write each, so a reader can count live children
#   BENCH_STDIN_WAIT   1: like the real CLI, when stdin is a pipe wait up to 3 s for
#                      data or EOF (without consuming it, so an MCP wire survives)
#
# Every other argument (the prompt included) is ignored. SIGTERM/SIGINT end it
# like the real CLI: 143 / 0 with no result line. The sleep runs in a child with
# its stdio on /dev/null, so this script is the only holder of the pipes.

fmt=text
sid=
while [ $# -gt 0 ]; do
    case $1 in
    --output-format) fmt=$2; shift ;;
    --output-format=*) fmt=${1#*=} ;;
    --session-id | --resume | -r) sid=$2; shift ;;
    --session-id=* | --resume=*) sid=${1#*=} ;;
    --version) echo "2.1.332 (Claude Code)"; exit 0 ;;
    --) break ;;
    esac
    shift
done

events=${BENCH_EVENTS:-}
if [ -n "$events" ]; then
    echo "+ $$" >>"$events"
fi
nap=
trap '[ -n "$nap" ] && kill "$nap" 2>/dev/null; [ -n "$events" ] && echo "- $$" >>"$events"; exit 143' TERM
trap '[ -n "$nap" ] && kill "$nap" 2>/dev/null; [ -n "$events" ] && echo "- $$" >>"$events"; exit 0' INT

if [ "${BENCH_STDIN_WAIT:-0}" = 1 ] && [ -p /dev/stdin ]; then
    # select() on fd 0: returns at data, EOF or 3 s, reads nothing.
    perl -e 'vec($r, 0, 1) = 1; select($r, undef, undef, 3)' 2>/dev/null
fi

ms=${BENCH_LATENCY_MS:-0}
if [ "$ms" -gt 0 ]; then
    # $ms as seconds with three decimals, in shell arithmetic.
    frac=$((ms % 1000 + 1000))
    sleep "$((ms / 1000)).${frac#1}" </dev/null >/dev/null 2>&1 &
    nap=$!
    wait "$nap"
    nap=
fi

if [ -z "$sid" ]; then
    read -r sid </proc/sys/kernel/random/uuid
fi
text='fake answer\n\nSTATUS: done'
result='{"type":"result","subtype":"success","is_error":false,"duration_ms":'$ms',"duration_api_ms":'$ms',"num_turns":1,"result":"'$text'","stop_reason":"end_turn","session_id":"'$sid'","total_cost_usd":0.00014,"usage":{"input_tokens":10,"output_tokens":5},"permission_denials":[],"terminal_reason":"completed"}'
case $fmt in
stream-json)
    printf '%s\n' '{"type":"system","subtype":"init","cwd":"'"$PWD"'","session_id":"'$sid'","tools":[],"mcp_servers":[],"model":"claude-fake","permissionMode":"default"}' \
        '{"type":"assistant","message":{"id":"msg_fake","type":"message","role":"assistant","model":"claude-fake","content":[{"type":"text","text":"'"$text"'"}]},"parent_tool_use_id":null,"session_id":"'$sid'"}' \
        "$result"
    ;;
json) printf '%s\n' "$result" ;;
*) printf 'fake answer\n' ;;
esac
if [ -n "$events" ]; then
    echo "- $$" >>"$events"
fi
exit 0
