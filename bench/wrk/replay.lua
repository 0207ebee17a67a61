-- Cycles once through a file of pre-signed requests (BENCH_REQUESTS), each thread taking
-- every n-th line (BENCH_THREADS threads), then stops its thread: each request is sent
-- once, so no delivery is a replay. Line format: headers and body separated by tabs:
--   name1=value1 \t name2=value2 ... \t BODY   (the last field is the body)
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

setup = common.setup
done = common.done

local reqs = {}
local index = 0

function init(args)
  local nthreads = tonumber(os.getenv("BENCH_THREADS"))
  local path = os.getenv("BENCH_REQUESTS")
  local n = 0
  for line in io.lines(path) do
    if n % nthreads == tid then
      local fields = {}
      for field in line:gmatch("[^\t]+") do fields[#fields + 1] = field end
      local headers = {["Content-Type"] = "application/json"}
      for i = 1, #fields - 1 do
        local name, value = fields[i]:match("^([^=]+)=(.*)$")
        headers[name] = value
      end
      reqs[#reqs + 1] = wrk.format("POST", nil, headers, fields[#fields])
    end
    n = n + 1
  end
end

function request()
  index = index + 1
  if index > #reqs then
    wrk.thread:stop()
    return reqs[#reqs]
  end
  return reqs[index]
end
