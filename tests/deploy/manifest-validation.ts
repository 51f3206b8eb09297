import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute";
import { Ajv } from "ajv";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { Role } from "kubernetes-models/rbac.authorization.k8s.io/v1/Role";
import { RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { PersistentVolumeClaim } from "kubernetes-models/v1/PersistentVolumeClaim";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import ts from "typescript";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import type { K8sObject } from "./kustomize-render.js";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, "../..");

/**
 * Each kind the manifests use, with its model class (whose validate() checks types, required fields,
 * formats and enums against the Kubernetes OpenAPI schema the package was generated from) and the module and
 * interface of its type declarations (used for the unknown-field check below).
 */
const KINDS = {
  "apps/v1/Deployment": { model: Deployment, module: "kubernetes-models/apps/v1/Deployment", type: "IDeployment" },
  "v1/Service": { model: Service, module: "kubernetes-models/v1/Service", type: "IService" },
  "v1/ConfigMap": { model: ConfigMap, module: "kubernetes-models/v1/ConfigMap", type: "IConfigMap" },
  "v1/Secret": { model: Secret, module: "kubernetes-models/v1/Secret", type: "ISecret" },
  "v1/ServiceAccount": { model: ServiceAccount, module: "kubernetes-models/v1/ServiceAccount", type: "IServiceAccount" },
  "v1/PersistentVolumeClaim": {
    model: PersistentVolumeClaim,
    module: "kubernetes-models/v1/PersistentVolumeClaim",
    type: "IPersistentVolumeClaim",
  },
  "rbac.authorization.k8s.io/v1/Role": { model: Role, module: "kubernetes-models/rbac.authorization.k8s.io/v1/Role", type: "IRole" },
  "rbac.authorization.k8s.io/v1/RoleBinding": {
    model: RoleBinding,
    module: "kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding",
    type: "IRoleBinding",
  },
  "gateway.networking.k8s.io/v1/HTTPRoute": {
    model: HTTPRoute,
    module: "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute",
    type: "IHTTPRoute",
  },
} as const;

export const INFERENCE_POOL = "inference.networking.k8s.io/v1/InferencePool";

export function kindKey(object: K8sObject): string {
  return `${object.apiVersion}/${object.kind}`;
}

export function isModelKind(key: string): key is keyof typeof KINDS {
  return key in KINDS;
}

/** Schema validation by the maintained models: throws with the package's message on a wrong type or a missing field. */
export function validateWithModel(object: K8sObject): void {
  const key = kindKey(object);
  if (!isModelKind(key)) throw new Error(`no model for ${key}`);
  const Model = KINDS[key].model as unknown as new (data: unknown) => { validate(): void };
  new Model(object).validate();
}

/**
 * The models' validators accept unknown fields (their schemas do not close objects), while the API server's
 * strict field validation (`kubectl apply --validate=strict`, the default since Kubernetes 1.27) rejects them.
 * This check closes that gap with the same package's type declarations: each object becomes a TypeScript
 * object literal typed as its interface, and the compiler reports every property the interface lacks (and any
 * value of the wrong type). Returns one message per problem, empty when the object is clean.
 */
export function unknownFieldErrors(objects: readonly K8sObject[]): string[][] {
  const dir = path.join(repoRoot, "tests/deploy");
  const files = objects.map((object, i) => {
    const key = kindKey(object);
    if (!isModelKind(key)) throw new Error(`no type declarations for ${key}`);
    const { module, type } = KINDS[key];
    const text = `import type { ${type} } from "${module}";\nexport const manifest: ${type} = ${JSON.stringify(object, null, 1)};\n`;
    return { name: path.join(dir, `__manifest_${i}.ts`), text };
  });
  const options: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const byName = new Map(files.map((f) => [f.name, f.text]));
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, languageVersion, ...rest) => {
    const text = byName.get(name);
    return text !== undefined ? ts.createSourceFile(name, text, languageVersion) : getSourceFile(name, languageVersion, ...rest);
  };
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => byName.has(name) || fileExists(name);
  const readFile = host.readFile.bind(host);
  host.readFile = (name) => byName.get(name) ?? readFile(name);
  const program = ts.createProgram(
    files.map((f) => f.name),
    options,
    host,
  );
  return files.map((f) => {
    const source = program.getSourceFile(f.name)!;
    return [...program.getSyntacticDiagnostics(source), ...program.getSemanticDiagnostics(source)].map((d) =>
      ts.flattenDiagnosticMessageText(d.messageText, " "),
    );
  });
}

/**
 * The InferencePool CRD's OpenAPI v3 schema (vendored, v1.5.0), made strict the way the API server treats a
 * structural schema: an object with `properties` and neither `additionalProperties` nor
 * `x-kubernetes-preserve-unknown-fields` admits no other field. Defaults, enums, patterns and bounds are
 * checked by Ajv; the CEL rules (`x-kubernetes-validations`) are not evaluated.
 */
export function inferencePoolValidator(): (object: unknown) => string[] {
  const file = path.join(repoRoot, "tests/deploy/fixtures/inference.networking.k8s.io_inferencepools.v1.5.0.yaml");
  const crd = parseYaml(readFileSync(file, "utf8")) as {
    spec: { versions: Array<{ name: string; schema: { openAPIV3Schema: unknown } }> };
  };
  const version = crd.spec.versions.find((v) => v.name === "v1");
  if (!version) throw new Error("the CRD has no v1 version");
  const schema = closeObjects(structuredClone(version.schema.openAPIV3Schema));
  const ajv = new Ajv({ allErrors: true, strict: false });
  ajv.addFormat("int32", { type: "number", validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
  ajv.addFormat("int64", { type: "number", validate: (n: number) => Number.isInteger(n) });
  ajv.addFormat("date-time", { type: "string", validate: (s: string) => !Number.isNaN(Date.parse(s)) });
  const validate = ajv.compile(schema as object);
  return (object) => (validate(object) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? e.keyword}`));
}

function closeObjects(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closeObjects);
  if (typeof schema !== "object" || schema === null) return schema;
  const node = schema as Record<string, unknown>;
  for (const [k, v] of Object.entries(node)) if (k !== "default" && k !== "enum") node[k] = closeObjects(v);
  if (node.properties && node.additionalProperties === undefined && node["x-kubernetes-preserve-unknown-fields"] !== true)
    node.additionalProperties = false;
  return node;
}

/**
 * The endpoint picker's configuration. No schema is published for it (it is not a CRD), so this mirrors the
 * Go types of gateway-api-inference-extension v1.5.0: apix/config/v1alpha1 EndpointPickerConfig, which the EPP
 * decodes strictly (unknown fields are an error), and the core-metrics-extractor's parameters
 * (pkg/epp/framework/plugins/datalayer/extractor/metrics/factories.go). The extractor's parameters are decoded
 * leniently by the EPP; they are strict here so a misspelt spec field cannot silently fall back to vLLM's names.
 */
const engineConfigSchema = z.strictObject({
  name: z.string().min(1),
  queuedRequestsSpec: z.string(),
  runningRequestsSpec: z.string(),
  kvUsageSpec: z.string(),
  loraSpec: z.string(),
  cacheInfoSpec: z.string(),
  cacheBlockSizeLabelName: z.string().optional(),
  cacheNumBlocksLabelName: z.string().optional(),
  cacheBlockSizeSpec: z.string().optional(),
  cacheNumBlocksSpec: z.string().optional(),
});
const pluginSchema = z.strictObject({ name: z.string().optional(), type: z.string().min(1), parameters: z.unknown().optional() });
export const eppConfigSchema = z.strictObject({
  apiVersion: z.literal("inference.networking.x-k8s.io/v1alpha1"),
  kind: z.literal("EndpointPickerConfig"),
  featureGates: z.array(z.string()).optional(),
  plugins: z.array(pluginSchema).min(1),
  schedulingProfiles: z
    .array(
      z.strictObject({
        name: z.string().min(1),
        plugins: z.array(z.strictObject({ pluginRef: z.string().min(1), weight: z.number().optional() })),
      }),
    )
    .min(1),
  dataLayer: z
    .strictObject({
      sources: z.array(
        z.strictObject({ pluginRef: z.string().min(1), extractors: z.array(z.strictObject({ pluginRef: z.string().min(1) })) }),
      ),
    })
    .optional(),
  saturationDetector: z.unknown().optional(),
  flowControl: z.unknown().optional(),
  parser: z.unknown().optional(),
});
export const coreMetricsExtractorSchema = z.strictObject({
  engineLabelKey: z.string().optional(),
  defaultEngine: z.string().optional(),
  engineConfigs: z.array(engineConfigSchema).optional(),
});
export type EppConfig = z.infer<typeof eppConfigSchema>;
export type EngineConfig = z.infer<typeof engineConfigSchema>;

/** The plugin types the v1.5.0 EPP registers that this configuration uses (cmd/epp/runner/runner.go). */
export const KNOWN_EPP_PLUGIN_TYPES = new Set([
  "metrics-data-source",
  "core-metrics-extractor",
  "queue-scorer",
  "kv-cache-utilization-scorer",
  "lora-affinity-scorer",
  "max-score-picker",
  "single-profile-handler",
  "prefix-cache-scorer",
]);

/** The EPP config held by the picker's ConfigMap, parsed and checked; throws on any deviation. */
export function parseEppConfig(configMap: K8sObject): { config: EppConfig; engine: EngineConfig; engineLabelKey: string } {
  const text = (configMap.data as Record<string, string> | undefined)?.["epp-config.yaml"];
  if (text === undefined) throw new Error("the ConfigMap has no epp-config.yaml");
  const config = eppConfigSchema.parse(parseYaml(text));
  const names = new Set(config.plugins.map((p) => p.name ?? p.type));
  for (const plugin of config.plugins)
    if (!KNOWN_EPP_PLUGIN_TYPES.has(plugin.type)) throw new Error(`unknown EPP plugin type ${plugin.type}`);
  const refs = [
    ...config.schedulingProfiles.flatMap((p) => p.plugins.map((x) => x.pluginRef)),
    ...(config.dataLayer?.sources ?? []).flatMap((s) => [s.pluginRef, ...s.extractors.map((e) => e.pluginRef)]),
  ];
  for (const ref of refs) if (!names.has(ref)) throw new Error(`pluginRef ${ref} names no plugin`);
  const extractor = config.plugins.find((p) => p.type === "core-metrics-extractor");
  if (!extractor) throw new Error("no core-metrics-extractor");
  const params = coreMetricsExtractorSchema.parse(extractor.parameters ?? {});
  const engine = params.engineConfigs?.find((e) => e.name === params.defaultEngine);
  if (!engine) throw new Error(`defaultEngine ${params.defaultEngine} has no engine config`);
  return { config, engine, engineLabelKey: params.engineLabelKey ?? "inference.networking.k8s.io/engine-type" };
}
