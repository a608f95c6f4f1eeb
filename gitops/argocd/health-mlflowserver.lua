-- Argo CD health of mlflowops.dev/MLflowServer, read from the conditions the operator writes
-- (docs/api.md): Ready, DatabaseReady, ArtifactStoreReady, SchemaMigrated, observedGeneration.
-- Install: resource.customizations.health.mlflowops.dev_MLflowServer in argocd-cm
-- (gitops/argocd/argocd-cm.yaml).
local hs = {}

-- Reasons that need a person (the operator also posts them as Warning Events), and any
-- Kubernetes<reason> of a request the Kubernetes API refused.
local needs_a_person = {
  SecretNotFound = true, SecretKeyMissing = true, SecretValueInvalid = true,
  MigrationFailed = true, InvalidSpec = true, StorageChangeRefused = true,
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

local ready = nil
for _, c in ipairs(status.conditions) do
  local refused = c.reason ~= nil and string.sub(c.reason, 1, 10) == "Kubernetes"
  if c.status == "False" and (needs_a_person[c.reason] or refused) then
    hs.status = "Degraded"
    hs.message = c.type .. ": " .. (c.message or c.reason)
    return hs
  end
  if c.type == "Ready" then
    ready = c
  end
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report readiness"
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Serving"
elseif ready.reason == "ScaledToZero" then
  hs.status = "Suspended"
  hs.message = ready.message or "spec.replicas is 0"
else
  hs.status = "Progressing"
  hs.message = ready.message or ready.reason
end
return hs
