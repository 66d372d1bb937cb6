-- Argo CD health check of a DrillSchedule (maturity.sre.dev): docs/gitops.md, section 3.
-- Uses only Argo CD's base and table libraries (no string.*): it runs without useOpenLibs.
local hs = {status = "Progressing", message = "waiting for the operator"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local gen = obj.metadata.generation
local seen = obj.status.observedGeneration
if gen ~= nil and (seen == nil or seen < gen) then
  hs.message = "generation " .. gen .. " not observed yet"
  return hs
end
local ready, stalled = nil, nil
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then ready = c end
  if c.type == "Stalled" then stalled = c end
end
-- Stalled=True: the spec must change; nothing heals by waiting.
if stalled ~= nil and stalled.status == "True" then
  if gen ~= nil and stalled.observedGeneration ~= nil and stalled.observedGeneration < gen then
    hs.message = "generation " .. gen .. " not observed yet"
    return hs
  end
  hs.status = "Degraded"
  hs.message = (stalled.reason or "") .. ": " .. (stalled.message or "")
  return hs
end
if ready == nil then
  return hs
end
if ready.status ~= "True" then
  hs.status = "Degraded"
  hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
  return hs
end
local active = obj.status.active
if active ~= nil then
  hs.message = "drill under way on " .. (active.target or "?") .. ": " .. (active.phase or "?")
  return hs
end
local last = nil
if obj.status.runs ~= nil then
  last = obj.status.runs[1]
end
hs.status = "Healthy"
hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
if last ~= nil then
  local what = "last drill " .. (last.result or "?")
  if last.reason ~= nil then
    what = what .. " (" .. last.reason .. ")"
  end
  hs.message = what .. "; " .. hs.message
  if last.result == "Failed" then
    hs.status = "Degraded"
  end
end
return hs
