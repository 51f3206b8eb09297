import { readFileSync, statSync } from "node:fs";
import path from "node:path";
import { parseAllDocuments } from "yaml";

/**
 * Renders deploy/kubernetes overlays the way `kustomize build` would, for the subset of kustomize the
 * manifests use, so CI can validate the rendered objects without kubectl or kustomize installed.
 * Supported: `resources` (files and directories holding a kustomization.yaml), `images` (name, newName,
 * newTag) and `patches` given by `path` (strategic merge patches). Any other kustomization field is an error,
 * so a manifest change that this renderer would silently mis-render fails the tests instead.
 */
export type K8sObject = Record<string, unknown> & {
  apiVersion: string;
  kind: string;
  metadata: { name: string } & Record<string, unknown>;
};

const SUPPORTED_FIELDS = new Set(["apiVersion", "kind", "resources", "images", "patches"]);

/**
 * Strategic-merge keys of the lists the patches touch (the patchMergeKey of the Kubernetes API types). Lists
 * not named here are replaced whole by a patch, as strategic merge does for lists without a merge key.
 */
const MERGE_KEYS: Readonly<Record<string, string>> = {
  containers: "name",
  initContainers: "name",
  env: "name",
  volumes: "name",
  volumeMounts: "mountPath",
  ports: "containerPort",
};

/**
 * Parses as YAML 1.1, as Kubernetes does (its YAML goes through go-yaml v2): `0440` is octal there (288), while
 * YAML 1.2 would read 440. The kubectl cross-check in manifests.test.ts caught exactly that difference.
 */
export function loadYamlDocuments(file: string): K8sObject[] {
  const docs = parseAllDocuments(readFileSync(file, "utf8"), { version: "1.1" });
  const objects: K8sObject[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    objects.push(value as K8sObject);
  }
  return objects;
}

export function renderKustomization(dir: string): K8sObject[] {
  const file = path.join(dir, "kustomization.yaml");
  const [kustomization] = loadYamlDocuments(file) as unknown as Array<Record<string, unknown>>;
  if (!kustomization) throw new Error(`${file}: empty`);
  for (const key of Object.keys(kustomization)) {
    if (!SUPPORTED_FIELDS.has(key)) throw new Error(`${file}: kustomization field '${key}' is not supported by the test renderer`);
  }
  let objects: K8sObject[] = [];
  for (const resource of (kustomization.resources as string[] | undefined) ?? []) {
    const target = path.resolve(dir, resource);
    objects.push(...(statSync(target).isDirectory() ? renderKustomization(target) : loadYamlDocuments(target)));
  }
  for (const patch of (kustomization.patches as Array<Record<string, unknown>> | undefined) ?? []) {
    if (Object.keys(patch).some((k) => k !== "path")) throw new Error(`${file}: only 'path' patches are supported`);
    for (const doc of loadYamlDocuments(path.resolve(dir, patch.path as string))) objects = applyPatch(objects, doc);
  }
  for (const image of (kustomization.images as Array<Record<string, string>> | undefined) ?? [])
    objects = objects.map((o) => setImage(o, image));
  return objects;
}

function applyPatch(objects: K8sObject[], patch: K8sObject): K8sObject[] {
  const matches = objects.filter(
    (o) => o.apiVersion === patch.apiVersion && o.kind === patch.kind && o.metadata.name === patch.metadata.name,
  );
  if (matches.length !== 1) throw new Error(`patch for ${patch.kind}/${patch.metadata.name} matches ${matches.length} objects`);
  return objects.map((o) => (o === matches[0] ? (strategicMerge(o, patch) as K8sObject) : o));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Strategic merge of `patch` into `base`: maps merge, keyed lists merge by key, other lists and scalars replace. */
export function strategicMerge(base: unknown, patch: unknown, key?: string): unknown {
  if (isObject(base) && isObject(patch)) {
    const merged: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(patch)) merged[k] = k in base ? strategicMerge(base[k], v, k) : v;
    return merged;
  }
  const mergeKey = key === undefined ? undefined : MERGE_KEYS[key];
  if (Array.isArray(base) && Array.isArray(patch) && mergeKey) {
    const merged = [...base];
    for (const item of patch) {
      const at = merged.findIndex((b) => isObject(b) && isObject(item) && b[mergeKey] === item[mergeKey]);
      if (at >= 0) merged[at] = strategicMerge(merged[at], item);
      else merged.push(item);
    }
    return merged;
  }
  return patch;
}

/** kustomize's `images` transformer: containers and init containers whose image name matches get the new name/tag. */
function setImage(object: K8sObject, image: Record<string, string>): K8sObject {
  const podSpec = ((object.spec as Record<string, unknown> | undefined)?.template as Record<string, unknown> | undefined)?.spec as
    | Record<string, unknown>
    | undefined;
  if (!podSpec) return object;
  const retag = (containers: unknown) =>
    (containers as Array<Record<string, unknown>> | undefined)?.map((c) => {
      const ref = String(c.image);
      const colon = ref.lastIndexOf(":");
      const [name, tag] = colon > ref.lastIndexOf("/") ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, undefined];
      if (name !== image.name) return c;
      const newTag = image.newTag ?? tag;
      return { ...c, image: `${image.newName ?? name}${newTag ? `:${newTag}` : ""}` };
    });
  const spec: Record<string, unknown> = { ...podSpec, containers: retag(podSpec.containers) };
  if (podSpec.initContainers) spec.initContainers = retag(podSpec.initContainers);
  return strategicMerge(object, { spec: { template: { spec } } }) as K8sObject;
}
