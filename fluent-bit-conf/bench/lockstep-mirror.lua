-- The comparison baseline for lockstep_filter.wasm: the Lua filter an edge operator
-- writes today so that logs follow a tail-sampling policy (keep every error and every
-- request slower than 200 ms, drop the rest), with the usual aliases of the services it
-- has met, and the later lines of a kept trace kept too. It decides as lockstep's built-in
-- default policy on the golden four-schema logs (scripts/bench-fluent-bit.sh compares
-- the kept counts), not beyond them: fewer aliases and level schemes than lockstep.
-- Used by fluent-bit-conf/bench/j-filter-lua.conf.
local ERROR_WORDS = {
  error = true, err = true, erro = true, eror = true, e = true, severe = true,
  fatal = true, fatl = true, fata = true, f = true, crit = true, critical = true,
  panic = true, alert = true, emerg = true, emergency = true,
}
local MS_KEYS = { "duration_ms", "latency_ms", "elapsed_ms", "took", "responseTime", "response_time_ms" }
local S_KEYS = { "duration", "request_time", "latency", "upstream_response_time" }
-- Go duration suffixes, in ms ("\194\181s" is "µs" in UTF-8).
local UNITS = { ns = 1e-6, us = 1e-3, ["\194\181s"] = 1e-3, ms = 1, s = 1000, m = 60000, h = 3600000 }
local LEVEL_KEYS = { "level", "lvl", "severity_text", "severity", "levelname", "log.level" }

local kept, nkept = {}, 0

local function is_error(r)
  for _, k in ipairs(LEVEL_KEYS) do
    local l = r[k]
    if type(l) == "string" then return ERROR_WORDS[string.lower(l)] == true end
    if type(l) == "number" then return l >= 50 end -- pino: 50 error, 60 fatal
  end
  local n = r["severity_number"]
  if type(n) == "number" then return n >= 17 end -- OTel: 17-24 error and fatal
  return false
end

local function duration_ms(r)
  for _, k in ipairs(MS_KEYS) do
    local v = r[k]
    if v ~= nil then return tonumber(v) end
  end
  for _, k in ipairs(S_KEYS) do
    local v = r[k]
    if type(v) == "number" then return v * 1000 end
    if type(v) == "string" then
      local num, unit = string.match(v, "^([%d%.]+)(.*)$")
      if num then
        local f = (unit == "") and 1000 or UNITS[unit]
        if f then return tonumber(num) * f end
      end
    end
  end
  return nil
end

function lockstep_mirror(tag, ts, record)
  local t = record["trace_id"] or record["traceId"]
  if type(t) == "string" then t = string.lower(t) else t = nil end
  local d = duration_ms(record)
  if is_error(record) or (d ~= nil and math.floor(d) > 200) then
    if t and not kept[t] then
      if nkept >= 4096 then kept, nkept = {}, 0 end
      kept[t] = true
      nkept = nkept + 1
    end
    return 0, ts, record
  end
  if t and kept[t] then return 0, ts, record end
  return -1, ts, record
end
