-- bench/scaleout-count.lua — wrk script for bench/scaleout.sh: counts every response by
-- status class and prints one machine-readable line at the end:
--   SCALEOUT requests=N ok=N non2xx=N connect=N read=N write=N timeout=N
-- ok counts 2xx; non2xx everything else (wrk's own "Non-2xx or 3xx" line lets 3xx
-- pass, a restart must not produce those either). The socket error counts are wrk's.
-- SCALEOUT_CLOSE=1 in the environment sends "Connection: close": one TCP connection
-- per request (wrk reconnects after each response), the case where connections
-- queued on a closing listener matter.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  non2xx = 0
  if os.getenv("SCALEOUT_CLOSE") == "1" then
    wrk.headers["Connection"] = "close"
  end
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local good, bad = 0, 0
  for _, t in ipairs(threads) do
    good = good + t:get("ok")
    bad = bad + t:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    "SCALEOUT requests=%d ok=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, good, bad, e.connect, e.read, e.write, e.timeout))
end
