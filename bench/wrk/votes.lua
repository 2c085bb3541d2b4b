-- Votes as fast as the gateway takes them (wrk, closed loop).
-- Each request is a distinct (agent, song) vote, so none is "Already voted".
-- Env: SEED_TXT (line 1: API keys separated by spaces; line 2: song ids), OFFSET.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(os.getenv("SEED_TXT"), "r"))
  keys, songs = {}, {}
  for key in file:read("*l"):gmatch("%S+") do table.insert(keys, key) end
  for song in file:read("*l"):gmatch("%S+") do table.insert(songs, song) end
  file:close()
  step = tonumber(os.getenv("THREADS") or "2")
  n = tonumber(os.getenv("OFFSET") or "0") + id
  acknowledged, refused = 0, 0
end

function request()
  local key = keys[(n % #keys) + 1]
  local song = songs[(math.floor(n / #keys) % #songs) + 1]
  local direction = (n % 3 == 0) and "down" or "up"
  n = n + step
  local body = '{"item_type":"song","item_id":"' .. song .. '","vote":"' .. direction .. '"}'
  return wrk.format("POST", "/api/v1/vote", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
  }, body)
end

function response(status, headers, body)
  if status == 200 then acknowledged = acknowledged + 1 else refused = refused + 1 end
end

function done(summary, latency, requests)
  local ok, bad = 0, 0
  for _, thread in ipairs(threads) do
    ok = ok + thread:get("acknowledged")
    bad = bad + thread:get("refused")
  end
  io.write(string.format("acknowledged %d refused %d\n", ok, bad))
end
