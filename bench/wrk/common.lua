-- Shared by the wrk scripts: thread ids, random UUIDs and a JSON summary in done().
-- Loaded with dofile(); wrk runs one Lua state per thread plus one for setup/done.

local M = {}

local thread_count = 0

function M.setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
end

local hex = "0123456789abcdef"

function M.uuid4()
  local parts = {}
  for i = 1, 32 do
    local n
    if i == 13 then
      n = 4
    elseif i == 17 then
      n = 8 + math.random(0, 3)
    else
      n = math.random(0, 15)
    end
    parts[#parts + 1] = hex:sub(n + 1, n + 1)
    if i == 8 or i == 12 or i == 16 or i == 20 then
      parts[#parts + 1] = "-"
    end
  end
  return table.concat(parts)
end

function M.seed(tid)
  local t = os.time()
  local c = math.floor((os.clock() * 1e6) % 1e6)
  math.randomseed(t * 1000 + c + (tid or 0) * 7919)
  for _ = 1, 10 do math.random() end
end

-- done(): one machine-readable line, parsed by bench/common.py run_wrk
function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_DONE {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"mean_us": %.1f, "p50_us": %d, "p90_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max))
end

return M
