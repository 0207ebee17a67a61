-- POST /hasura/actions, action sendNotification as Hasura sends it (admin session),
-- a random userId per request. Secret from the environment: BENCH_ACTION_SECRET.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

setup = common.setup
done = common.done

local query = "mutation SendNotification($input: SendNotificationInput!) " ..
  "{ sendNotification(input: $input) { success notificationId status message } }"

function init(args)
  common.seed(tid)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Notifications-Action-Secret"] = os.getenv("BENCH_ACTION_SECRET")
end

function request()
  local user = common.uuid4()
  local body = '{"action": {"name": "sendNotification"}, ' ..
    '"input": {"input": {"userId": "' .. user .. '", "channel": "EMAIL", ' ..
    '"to": {"email": "user-' .. user:sub(1, 8) .. '@example.com"}, ' ..
    '"subject": "Your order has shipped", ' ..
    '"body": "Hello, your order is on its way and should arrive within 3 days."}}, ' ..
    '"session_variables": {"x-hasura-role": "admin"}, ' ..
    '"request_query": "' .. query:gsub('"', '\\"') .. '"}'
  return wrk.format(nil, nil, nil, body)
end
