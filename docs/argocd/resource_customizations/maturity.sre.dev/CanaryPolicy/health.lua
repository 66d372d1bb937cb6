-- Argo CD health check of a CanaryPolicy (maturity.sre.dev): docs/gitops.md, section 3.
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
-- The latest record of each Deployment (records are sorted newest first).
local failed, running, latest = {}, {}, {}
for _, r in ipairs(obj.status.rollouts or {}) do
  if r.deployment ~= nil and latest[r.deployment] == nil then
    latest[r.deployment] = true
    local what = r.deployment .. " revision " .. (r.revision or "?") .. " " .. (r.phase or "?")
    if r.message ~= nil then
      what = what .. " (" .. r.message .. ")"
    end
    if r.phase == "Held" or r.phase == "RollingBack" or r.phase == "RolledBack" then
      table.insert(failed, what)
    elseif r.phase == "Progressing" or r.phase == "Analyzing" or r.phase == "Inconclusive" or r.phase == "Promoting" then
      table.insert(running, what)
    end
  end
end
if #failed > 0 then
  hs.status = "Degraded"
  hs.message = table.concat(failed, "; ")
elseif #running > 0 then
  hs.message = table.concat(running, "; ")
else
  hs.status = "Healthy"
  hs.message = (ready.reason or "") .. ": " .. (ready.message or "")
end
return hs
