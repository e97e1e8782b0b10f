-- wrk script for `bench/claims_wrk.sh`: each connection loops claim -> complete against
-- `jobline serve`. LIMIT (env, default 0) > 0 sends {"limit": LIMIT} and completes every task
-- of the batch, one request each; with BATCH_COMPLETE=1 as well, all of them in one
-- POST /api/tasks/complete. A "cycle" is one completed task.
-- Connections of one wrk thread share its queue of claimed tasks, since wrk does not say which
-- connection an answer came on; what counts is tasks claimed and completed per second.
local key = os.getenv("JOBLINE_SERVICE_KEY") or "bench-service-key"
local limit = tonumber(os.getenv("LIMIT") or "0")
local batch_complete = os.getenv("BATCH_COMPLETE") == "1"
local headers = {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}
local claim_body = limit > 0 and ('{"limit": ' .. limit .. '}') or "{}"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  pending = {}      -- {id, token} claimed, not yet completed
  completed, empty, errors, claims = 0, 0, 0, 0
end

function request()
  if batch_complete and #pending > 0 then
    local reports = {}
    for i, task in ipairs(pending) do
      reports[i] = '{"task_id": ' .. task[1] .. ', "lease_token": "' .. task[2] .. '"}'
    end
    pending = {}
    return wrk.format("POST", "/api/tasks/complete", headers, '{"reports": [' .. table.concat(reports, ",") .. ']}')
  end
  local task = table.remove(pending)
  if task then
    return wrk.format("POST", "/api/tasks/" .. task[1] .. "/complete", headers,
                      '{"lease_token": "' .. task[2] .. '", "result": null}')
  end
  return wrk.format("POST", "/functions/v1/claim-next-task", headers, claim_body)
end

function response(status, hdrs, body)
  if status == 204 then
    empty = empty + 1
  elseif status ~= 200 then
    errors = errors + 1
  elseif body:find('"reports"', 1, true) then
    for _ in body:gmatch('"succeeded"') do completed = completed + 1 end
  elseif body:find('"status"', 1, true) then
    completed = completed + 1
  else
    claims = claims + 1
    local n = 0
    for id, token in body:gmatch('"task_id":%s*(%d+).-"lease_token":%s*"([^"]+)"') do
      table.insert(pending, {id, token})
      n = n + 1
    end
    if n == 0 then empty = empty + 1 end
  end
end

function done(summary, latency, requests)
  local c, e, x, k = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    c, e, x, k = c + t:get("completed"), e + t:get("empty"), x + t:get("errors"), k + t:get("claims")
  end
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT cycles_per_s=%.1f claims=%d empty=%d errors=%d p50_ms=%.2f p99_ms=%.2f\n",
                         c / seconds, k, e, x, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
