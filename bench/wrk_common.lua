-- What every paytool wrk script shares: the thread registry, counting non-200 answers
-- (the first three shown on stderr), and at the end one machine-readable line the bench
-- scripts parse. A script that sets the global `lean_answers` before loading this file
-- gets no response(): wrk then never hands an answer to Lua, and non200 is wrk's own count
-- of answers of 400 and above.
--   BENCH requests=N duration_us=N non200=N errors_connect=N ... p50_us=N ... mean_us=N
-- Loaded by dofile() from the script beside it (bench/payments.lua, bench/reads.lua).

threads = {}
-- Globals, not locals: wrk's thread:set()/thread:get() reach only globals.
tid = nil     -- set by setup() in each thread's Lua state
non200 = 0    -- read by done() from every thread

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local function count_answer(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    -- Keep the first few for the report.
    if non200 <= 3 then
      io.stderr:write(string.format("non-200 status %d: %s\n", status,
        string.sub(body or "", 1, 200)))
    end
  end
end

-- wrk reads the answers in Lua only when response() exists at all.
if not lean_answers then response = count_answer end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + (tonumber(t:get("non200")) or 0)
  end
  local e = summary.errors
  if lean_answers then bad = e.status end
  io.write(string.format(
    "BENCH requests=%d duration_us=%d non200=%d errors_connect=%d errors_read=%d " ..
    "errors_write=%d errors_status=%d errors_timeout=%d p50_us=%d p90_us=%d " ..
    "p99_us=%d p999_us=%d max_us=%d mean_us=%.0f\n",
    summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
