-- wrk script for `paytool serve`: GET /v1/payments/{id}, spread over known payments.
--
-- Environment (read by every wrk thread):
--   BENCH_PAIRS  a file of "<secret key> <payment id>" lines, one per payment (the key of
--                the merchant that owns it); requests walk the lines round-robin, each
--                thread starting at its own offset, so every id is read about equally
--
-- The requests are formatted once, in init(), so wrk spends as little CPU per request
-- as it can (it shares the cores with the API).
-- At the end it prints one machine-readable line, as bench/payments.lua does:
--   BENCH requests=N non200=N errors_connect=N ... p50_us=N p90_us=N p99_us=N ...

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

-- Globals, not locals: wrk's thread:set()/thread:get() reach only globals.
tid = nil     -- set by setup() in each thread's Lua state
non200 = 0    -- read by done() from every thread
local reqs = {}
local counter = 0

function init(args)
  tid = tonumber(tid) or 1
  local path = os.getenv("BENCH_PAIRS") or ""
  local f = io.open(path, "r")
  if not f then
    error("BENCH_PAIRS must name a file of \"<key> <payment id>\" lines, got: " .. path)
  end
  for line in f:lines() do
    local key, id = string.match(line, "^(%S+)%s+(%S+)")
    if key then
      table.insert(reqs, wrk.format("GET", "/v1/payments/" .. id,
        { ["Authorization"] = "Bearer " .. key }))
    end
  end
  f:close()
  if #reqs == 0 then
    error("BENCH_PAIRS " .. path .. " holds no \"<key> <payment id>\" line")
  end
  -- Each thread starts at its own offset (golden-ratio spacing: apart for any number of
  -- threads), so the threads do not read the same payment at the same moment.
  counter = math.floor((((tid - 1) * 0.6180339887) % 1) * #reqs)
  non200 = 0
end

function request()
  counter = counter + 1
  return reqs[(counter % #reqs) + 1]
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    -- Keep the first few for the report.
    if non200 <= 3 then
      io.stderr:write(string.format("non-200 status %d: %s\n", status,
        string.sub(body or "", 1, 200)))
    end
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + (tonumber(t:get("non200")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d non200=%d errors_connect=%d errors_read=%d " ..
    "errors_write=%d errors_status=%d errors_timeout=%d p50_us=%d p90_us=%d " ..
    "p99_us=%d p999_us=%d max_us=%d mean_us=%.0f\n",
    summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
