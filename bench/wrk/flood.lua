-- Distinct cacheable-looking reads, each URL (and Host) different: the
-- attack that grew Envoy's edge cache without bound. Random filters, dates,
-- limits, spellings and item ids over trending, charts and history.
local periods = {"daily", "weekly", "monthly", "all_time"}
local counter = 0

local function token()
  counter = counter + 1
  return string.format("%x%x", math.random(0, 0x7fffffff), counter)
end

request = function()
  local kind = math.random(1, 6)
  local path
  if kind == 1 then
    path = "/api/v1/trending?genre=" .. token()
  elseif kind == 2 then
    path = "/api/v1/trending?limit=" .. math.random(1, 50) .. "&platform=" .. token()
  elseif kind == 3 then
    path = string.format("/api/v1/top/%s?date=%04d-%02d-%02d", periods[math.random(1, 4)],
      math.random(2000, 2026), math.random(1, 12), math.random(1, 28))
  elseif kind == 4 then
    path = "/api/v1/top/daily?genre=" .. token() .. "&limit=" .. math.random(1, 100)
  elseif kind == 5 then
    path = "/api/v1/songs/" .. token() .. "/history"
  else
    path = "/api/v1/trending?limit=" .. string.rep("0", math.random(1, 30)) .. math.random(1, 50)
  end
  return wrk.format("GET", path, {["Host"] = token() .. ".example"})
end
