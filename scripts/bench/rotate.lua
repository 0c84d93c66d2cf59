-- wrk script for `make bench`: one request per line of a token file, in
-- rotation ("-" = no Authorization header), all requests built once in init
-- so the generator does no string work per request. done() prints one JSON
-- line (prefixed WRKJSON) that scripts/bench/run.sh records.
--   wrk ... -s scripts/bench/rotate.lua URL -- TOKENS_FILE [PATH]
local reqs = {}
local n, i = 0, 0

function init(args)
  local path = args[1]
  local target = args[2] or "/api/items"
  for line in io.lines(path) do
    if line ~= "" then
      n = n + 1
      if line == "-" then
        reqs[n] = wrk.format("GET", target)
      else
        reqs[n] = wrk.format("GET", target, { ["Authorization"] = "Bearer " .. line })
      end
    end
  end
  assert(n > 0, "no tokens in " .. tostring(path))
end

function request()
  i = i % n + 1
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
