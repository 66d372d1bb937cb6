-- Argo CD health check of a MaturityAssessment (maturity.sre.dev): docs/gitops.md, section 3.
-- Uses only Argo CD's base and table libraries (no string.*): it runs without useOpenLibs.
local hs = {status = "Progressing", message = "not evaluated yet"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local gen = obj.metadata.generation
local seen = obj.status.observedGeneration
if gen ~= nil and (seen == nil or seen < gen) then
  hs.message = "generation " .. gen .. " not evaluated yet"
  return hs
end
local ready, target, stalled = nil, nil, nil
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then ready = c end
  if c.type == "TargetLevelMet" then target = c end
  if c.type == "Stalled" then stalled = c end
end
-- Stalled=True: the spec must change; nothing heals by waiting.
if stalled ~= nil and stalled.status == "True" then
  if gen ~= nil and stalled.observedGeneration ~= nil and stalled.observedGeneration < gen then
    hs.message = "generation " .. gen .. " not evaluated yet"
    return hs
  end
  hs.status = "Degraded"
  hs.message = (stalled.reason or "") .. ": " .. (stalled.message or "")
  return hs
end
-- Ready=False (Prometheus unreachable): the level is only a lower bound, keep waiting.
if ready ~= nil and ready.status == "False" then
  hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
  return hs
end
if target ~= nil then
  hs.message = (target.reason or "") .. ": " .. (target.message or "")
  if target.status == "True" then
    hs.status = "Healthy"
  elseif target.status == "False" then
    hs.status = "Degraded"
  end
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
end
return hs
