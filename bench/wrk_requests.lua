-- wrk script: POST each line of $WRK_REQUESTS ("path<TAB>body") once, in order, split
-- between wrk's threads (thread i takes lines i, i+n, i+2n, ...). When the list runs out
-- the thread wraps around (the bench sizes the list so that it does not).
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  -- setup() ran in another Lua state: the thread count comes from the environment.
  nthreads = tonumber(os.getenv("WRK_THREADS"))
  paths, bodies = {}, {}
  for line in io.lines(os.getenv("WRK_REQUESTS")) do
    local tab = line:find("\t", 1, true)
    paths[#paths + 1] = line:sub(1, tab - 1)
    bodies[#bodies + 1] = line:sub(tab + 1)
  end
  i = tid + 1
  wrapped = 0
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  if i > #paths then
    i = tid + 1
    wrapped = wrapped + 1
  end
  local p, b = paths[i], bodies[i]
  i = i + nthreads
  return wrk.format("POST", p, nil, b)
end

function done(summary, latency, requests)
  local wraps = 0
  for _, t in ipairs(threads) do
    wraps = wraps + (t:get("wrapped") or 0)
  end
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f p50_us=%d p99_us=%d non2xx=%d errors=%d wrapped=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.timeout, wraps))
end
