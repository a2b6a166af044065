-- wrk script: the Pushgateway equivalent of bench/webhook.lua. Each request pushes one gauge
-- line, the id's connected state, to the group of that id (job "localtonet", label "id"),
-- with the ids spread over KEYS groups (default 10,000; env BENCH_KEYS). A group per id is
-- how per-id state would have to be kept in a Pushgateway: a push replaces the metrics of the
-- same name in its group, so ids sharing a group would overwrite one another.
--
-- done() prints one line, "RESULT key=value ...", that bench/run.sh reads.

local keys = math.min(tonumber(os.getenv("BENCH_KEYS") or "10000"), 1000000)

-- wrk's thread count (-t), which run.sh passes as BENCH_THREADS: thread i sends the sequence
-- numbers i, i + threads, i + 2 * threads, ...
local stride = tonumber(os.getenv("BENCH_THREADS") or "1")
local counter = 0
local created = 0
offset = 0 -- set by setup() in each thread's own Lua state, before the thread starts

function setup(thread)
   thread:set("offset", created)
   created = created + 1
end

-- The request is written here rather than by wrk.format(), as in bench/webhook.lua.
local host = wrk.port and (wrk.host .. ":" .. wrk.port) or wrk.host
local template = "POST /metrics/job/localtonet/id/bench-%06d HTTP/1.1\r\nHost: " .. host ..
   "\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %d\r\n\r\n%s"
local bodies = {
   'localtonet_connected{type="tunnel"} 0\n',
   'localtonet_connected{type="tunnel"} 1\n',
}

function request()
   local seq = counter * stride + offset
   counter = counter + 1
   local body = bodies[math.floor(seq / keys) % 2 + 1]
   return string.format(template, seq % keys, #body, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d " ..
      "bad_status=%d connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
