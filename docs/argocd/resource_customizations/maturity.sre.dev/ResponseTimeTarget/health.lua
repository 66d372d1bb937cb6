-- Argo CD health check of a ResponseTimeTarget (maturity.sre.dev): docs/gitops.md, section 3.
-- Uses only Argo CD's base and table libraries (no string.*): it runs without useOpenLibs.
local hs = {status = "Progressing", message = "waiting for the operator's first measurement"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local gen = obj.metadata.generation
local seen = obj.status.observedGeneration
if gen ~= nil and (seen == nil or seen < gen) then
  hs.message = "generation " .. gen .. " not measured yet"
  return hs
end
local ready, met, stalled = nil, nil, nil
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then ready = c end
  if c.type == "ObjectiveMet" then met = c end
  if c.type == "Stalled" then stalled = c end
end
-- Stalled=True: the spec must change; nothing heals by waiting.
if stalled ~= nil and stalled.status == "True" then
  if gen ~= nil and stalled.observedGeneration ~= nil and stalled.observedGeneration < gen then
    hs.message = "generation " .. gen .. " not measured yet"
    return hs
  end
  hs.status = "Degraded"
  hs.message = (stalled.reason or "") .. ": " .. (stalled.message or "")
  return hs
end
if ready ~= nil and ready.status == "False" then
  hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
  local r = ready.reason
  if r == "QueryRejected" or r == "ThresholdNotABucket" or r == "AmbiguousQuery" or r == "InvalidSpec" then
    hs.status = "Degraded"
  end
  return hs
end
if met == nil then
  return hs
end
hs.message = (met.reason or "") .. ": " .. (met.message or "")
if met.status == "True" then
  hs.status = "Healthy"
elseif met.status == "False" then
  hs.status = "Degraded"
end
return hs
