-- wrk script: one Localtonet event per POST, as Localtonet sends them.
--
-- Ids are spread over KEYS tunnel ids (default 10,000; env BENCH_KEYS). Every request gets
-- its own sequence number; it decides the id (seq % KEYS), the status (each id alternates
-- Connected and Disconnected) and the ActionDate (one microsecond per sequence number from an
-- hour ago), so every event is applied: none is an exact repeat, and per id the dates
-- increase apart from the interleaving of wrk's threads.
--
-- done() prints one line, "RESULT key=value ...", that bench/run.sh reads.

local keys = math.min(tonumber(os.getenv("BENCH_KEYS") or "10000"), 1000000)
local base = tonumber(os.getenv("BENCH_BASE") or "") or (os.time() - 3600)

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

-- The request is written here rather than by wrk.format(), which costs the load generator
-- more CPU than the exporter's parser costs the exporter. The body has one of two lengths.
-- Ids have a fixed width, so every body with the same status has the same length.
local function head(length)
   local host = wrk.port and (wrk.host .. ":" .. wrk.port) or wrk.host
   return "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. host ..
      "\r\nContent-Type: application/json\r\nContent-Length: " .. length .. "\r\n\r\n"
end
local statuses = {"Connected", "Disconnected"}
local heads = {}
local second, date = nil, nil

function request()
   local seq = counter * stride + offset
   counter = counter + 1
   local status = math.floor(seq / keys) % 2 + 1
   local s = base + math.floor(seq / 1000000)
   if s ~= second then
      second, date = s, os.date("!%Y-%m-%dT%H:%M:%S", s)
   end
   local body = string.format(
      '{"Id":"bench-%06d","ActionDate":"%s.%06d","Type":"Tunnel","Status":"%s"}',
      seq % keys, date, seq % 1000000, statuses[status])
   local h = heads[status]
   if h == nil then
      h = head(#body)
      heads[status] = h
   end
   return h .. body
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d " ..
      "bad_status=%d connect=%d read=%d write=%d timeout=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
