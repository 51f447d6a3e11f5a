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

-- setup(), response() and done() (the BENCH line) come from wrk_common.lua beside this file.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "wrk_common.lua")

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
