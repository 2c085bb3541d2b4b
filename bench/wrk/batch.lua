-- Batches of 100 votes as fast as the gateway takes them (wrk, closed loop).
-- Batch n is agent n % #keys voting on 100 songs of its own block, so no
-- vote is "Already voted" while n < #keys * #songs / 100.
-- Env: SEED_TXT (line 1: API keys separated by spaces; line 2: song ids),
-- OFFSET (first batch number), SONG_BASE (first song index), THREADS,
-- BATCH (votes per request, 100).
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
  size = tonumber(os.getenv("BATCH") or "100")
  base = tonumber(os.getenv("SONG_BASE") or "0")
  n = tonumber(os.getenv("OFFSET") or "0") + id
  acknowledged, refused = 0, 0
end

function request()
  local key = keys[(n % #keys) + 1]
  local first = base + math.floor(n / #keys) * size
  local votes = {}
  for j = 0, size - 1 do
    local song = songs[((first + j) % #songs) + 1]
    local direction = ((first + j) % 3 == 0) and "down" or "up"
    votes[#votes + 1] = '{"item_type":"song","item_id":"' .. song .. '","vote":"' .. direction .. '"}'
  end
  n = n + step
  return wrk.format("POST", "/api/v1/votes:batchCreate", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
  }, '{"votes":[' .. table.concat(votes, ",") .. ']}')
end

function response(status, headers, body)
  if status ~= 200 then
    refused = refused + size
    return
  end
  local _, recorded = body:gsub('"status":"recorded"', "")
  acknowledged = acknowledged + recorded
  refused = refused + (size - recorded)
end

function done(summary, latency, requests)
  local ok, bad = 0, 0
  for _, thread in ipairs(threads) do
    ok = ok + thread:get("acknowledged")
    bad = bad + thread:get("refused")
  end
  io.write(string.format("acknowledged %d refused %d\n", ok, bad))
end
