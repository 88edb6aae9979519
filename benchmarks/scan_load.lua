-- wrk script for POST /v1/scans with realistic traffic: mostly first scans of issued codes,
-- repeat scans of codes already scanned, a few counterfeits, phones around a city.
-- Each request comes from one of 65,536 client addresses (X-Forwarded-For, believed because
-- the server trusts 127.0.0.1 as a proxy), as a public endpoint sees it.
-- Every scan carries a member id, m-1 .. m-SCAN_MEMBERS.
-- Environment: SCAN_CODES (file, one code per line), SCAN_RATE (requests/s for all
-- connections, 0 = as fast as possible), SCAN_CONNECTIONS (the -c given to wrk), SCAN_MEMBERS
-- (default 50,000).
local codes = {}
local rate = tonumber(os.getenv("SCAN_RATE") or "0")
local connections = tonumber(os.getenv("SCAN_CONNECTIONS") or "1")
local members = tonumber(os.getenv("SCAN_MEMBERS") or "50000")
local headers = { ["Content-Type"] = "application/json", ["X-Forwarded-For"] = "" }
local counter, thread_id = 0, 0
local threads = {}

function setup(thread)
    thread_id = thread_id + 1
    thread:set("id", thread_id)
    table.insert(threads, thread)
end

function init(args)
    for line in io.lines(os.getenv("SCAN_CODES")) do codes[#codes + 1] = line end
    math.randomseed(id * 7919 + os.time())
    counter = math.random(#codes)
end

function delay()
    if rate <= 0 then return 0 end
    -- paced connections: each waits its share of the interval (wrk is closed-loop)
    return math.random() * 2 * 1000 * connections / rate
end

function request()
    counter = counter + 1
    local pick = math.random()
    local code
    if pick < 0.02 then
        code = "FAKE" .. counter
    elseif pick < 0.30 then
        code = codes[math.random(#codes)]              -- a repeat scan of some code
    else
        code = codes[(counter % #codes) + 1]           -- mostly new codes
    end
    local body = string.format(
        '{"code":"%s","lat":%.5f,"lon":%.5f,"accuracy_m":15,"device_id":"dev-%d","member_id":"m-%d"}',
        code, 31.2 + math.random() * 0.2, 121.4 + math.random() * 0.2,
        math.random(100000), math.random(members))
    headers["X-Forwarded-For"] = string.format("198.18.%d.%d", math.random(0, 255), math.random(0, 255))
    return wrk.format("POST", "/v1/scans", headers, body)
end

function done(summary, latency, requests)
    io.write(string.format(
        'WRK_JSON {"requests": %d, "seconds": %.3f, "errors": %d, "non_2xx": %d, ' ..
        '"p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "p999_ms": %.3f, "max_ms": %.3f}\n',
        summary.requests, summary.duration / 1e6,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        summary.errors.status,
        latency:percentile(50) / 1000, latency:percentile(90) / 1000,
        latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000))
end
