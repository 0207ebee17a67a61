-- POST /api/notifications/send, a random user_id per request (no dedup, no per-user limit).
-- API key from the environment: BENCH_API_KEY.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

setup = common.setup
done = common.done

function init(args)
  common.seed(tid)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-API-Key"] = os.getenv("BENCH_API_KEY")
end

function request()
  local user = common.uuid4()
  local body = '{"user_id": "' .. user .. '", "channel": "email", ' ..
    '"to": {"email": "user-' .. user:sub(1, 8) .. '@example.com"}, ' ..
    '"subject": "Your order has shipped", ' ..
    '"body": "Hello, your order is on its way and should arrive within 3 days."}'
  return wrk.format(nil, nil, nil, body)
end
