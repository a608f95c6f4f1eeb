-- Argo CD health of mlflowops.dev/ModelDeployment, read from the conditions the operator writes
-- (docs/api.md): Ready, Progressing, Degraded, RegistrySynced, and status.observedGeneration.
-- Install: resource.customizations.health.mlflowops.dev_ModelDeployment in argocd-cm
-- (gitops/argocd/argocd-cm.yaml).
local hs = {}

local function condition(conditions, wanted)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

-- The selector points nowhere the operator could deploy from; a person has to act. Other
-- RegistrySynced reasons (VersionNotReady: the registry is still registering it) pass.
local needs_a_person = {
  ModelNotFound = true, AliasNotFound = true, NoVersionInStage = true, VersionNotFound = true,
  RegistryUnreachable = true, ServerNotFound = true, CredentialsNotFound = true,
  RegistryCredentialsRefused = true, RegistryHttpError = true, RegistryBadResponse = true,
  RegistryStalled = true,
}

local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

local ready = condition(status.conditions, "Ready")
local progressing = condition(status.conditions, "Progressing")
local degraded = condition(status.conditions, "Degraded")
local synced = condition(status.conditions, "RegistrySynced")

-- A failed or blocked rollout (the previous version may serve again), a spec the operator
-- refused, or a request the Kubernetes API refused.
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = degraded.message or degraded.reason
  return hs
end

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  if ready ~= nil and ready.status == "True" then
    hs.message = "Suspended: " .. (ready.message or "serving") .. "; the registry is not followed"
  else
    hs.message = "Suspended: the registry is not followed"
  end
  return hs
end

if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = progressing.message or progressing.reason
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Serving"
  -- Serving continues while the registry cannot be read; say so without alarming.
  if synced ~= nil and synced.status == "False" and synced.message ~= nil then
    hs.message = hs.message .. "; " .. synced.message
  end
  return hs
end

if synced ~= nil and synced.status == "False" and needs_a_person[synced.reason] then
  hs.status = "Degraded"
  hs.message = synced.message or synced.reason
  return hs
end

hs.status = "Progressing"
if ready ~= nil and ready.message ~= nil then
  hs.message = ready.message
else
  hs.message = "Waiting for the model to be served"
end
return hs
