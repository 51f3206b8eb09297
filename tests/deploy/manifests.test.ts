import { execFileSync, spawnSync } from "node:child_process";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { type K8sObject, renderKustomization, strategicMerge } from "./kustomize-render.js";
import {
  INFERENCE_POOL,
  inferencePoolValidator,
  kindKey,
  parseEppConfig,
  repoRoot,
  unknownFieldErrors,
  validateWithModel,
} from "./manifest-validation.js";

// The overlays rendered without kubectl (tests/deploy/kustomize-render.ts), then each object checked against
// real schemas: Kubernetes core, apps, RBAC and Gateway API types with the kubernetes-models packages, the
// InferencePool with its CRD's OpenAPI schema (v1.5.0, vendored), the endpoint picker's config with a schema
// mirroring its Go types. Unknown fields are caught by a strict pass over the same packages' type declarations.

const OVERLAYS = ["cpu", "cuda"] as const;
const rendered = Object.fromEntries(
  OVERLAYS.map((o) => [o, renderKustomization(path.join(repoRoot, "deploy/kubernetes/overlays", o))]),
) as Record<(typeof OVERLAYS)[number], K8sObject[]>;

const validatePool = inferencePoolValidator();

function find(objects: readonly K8sObject[], kind: string, name: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`no ${kind}/${name}`);
  return found;
}

function schemaErrors(object: K8sObject): string[] {
  if (kindKey(object) === INFERENCE_POOL) return validatePool(object);
  try {
    validateWithModel(object);
    return [];
  } catch (error) {
    return [(error as Error).message];
  }
}

type Any = Record<string, any>;
const serverContainer = (objects: readonly K8sObject[]): Any =>
  (find(objects, "Deployment", "lori-server") as Any).spec.template.spec.containers.find((c: Any) => c.name === "lori-server");
const flag = (container: Any, name: string): string | undefined =>
  (container.args as string[]).find((a) => a.startsWith(`--${name}=`))?.split("=")[1];

describe("deploy/kubernetes: each rendered manifest against its schema", () => {
  for (const overlay of OVERLAYS) {
    for (const object of rendered[overlay]) {
      it(`${overlay}: ${object.kind}/${object.metadata.name}`, () => {
        expect(schemaErrors(object)).toEqual([]);
        if (object.kind === "ConfigMap" && object.metadata.name === "lori-server-epp") expect(() => parseEppConfig(object)).not.toThrow();
      });
    }
  }

  it("renders the same kinds in both overlays: 13 objects each", () => {
    for (const overlay of OVERLAYS)
      expect(rendered[overlay].map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
        rendered.cpu.map((o) => `${o.kind}/${o.metadata.name}`).sort(),
      );
    expect(rendered.cpu).toHaveLength(13);
  });
});

// Where kubectl is installed, its built-in kustomize must render exactly what the test renderer does (CI
// machines without kubectl skip this; the renderer is then the only one).
const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" }).status === 0;

describe.skipIf(!kubectl)("deploy/kubernetes: the test renderer agrees with `kubectl kustomize`", () => {
  const byName = (objects: Any[]) =>
    [...objects].sort((a, b) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`));
  for (const overlay of OVERLAYS) {
    it(overlay, () => {
      const output = execFileSync("kubectl", ["kustomize", path.join(repoRoot, "deploy/kubernetes/overlays", overlay)], {
        encoding: "utf8",
      });
      const theirs = parseAllDocuments(output, { version: "1.1" }).map((d) => d.toJS() as Any);
      expect(byName(rendered[overlay])).toEqual(byName(theirs));
    });
  }
});

describe("deploy/kubernetes: unknown fields and wrong types fail", () => {
  const broken: Array<{ what: string; object: K8sObject }> = [];
  let strict: string[][] = [];
  const cpuDeployment = () => find(rendered.cpu, "Deployment", "lori-server");

  beforeAll(() => {
    broken.push(
      {
        what: "a misspelt container field",
        object: strategicMerge(cpuDeployment(), {
          spec: { template: { spec: { containers: [{ name: "lori-server", imagePullPolicyy: "Always" }] } } },
        }) as K8sObject,
      },
      {
        what: "an unknown top-level spec field",
        object: strategicMerge(find(rendered.cpu, "HTTPRoute", "lori-server"), { spec: { backendRef: { name: "x" } } }) as K8sObject,
      },
      {
        what: "a string where a port number belongs",
        object: strategicMerge(find(rendered.cpu, "Service", "lori-server"), {
          spec: { ports: [{ name: "http", port: "8080" }] },
        }) as K8sObject,
      },
    );
    const objects = [...rendered.cpu, ...rendered.cuda].filter((o) => kindKey(o) !== INFERENCE_POOL);
    strict = unknownFieldErrors([...objects, ...broken.map((b) => b.object)]);
  }, 120_000);

  it("every shipped manifest has only known fields of the right types (TypeScript declarations of the models)", () => {
    const shipped = strict.slice(0, strict.length - broken.length);
    expect(shipped.length).toBeGreaterThan(20);
    expect(shipped.flat()).toEqual([]);
  });

  it("the strict pass reports a misspelt field, an unknown field and a wrong type", () => {
    const reports = strict.slice(strict.length - broken.length);
    expect(reports[0]!.join("\n")).toMatch(/imagePullPolicyy/);
    expect(reports[1]!.join("\n")).toMatch(/backendRef/);
    expect(reports[2]!.join("\n")).toMatch(/string.*number|number.*string/);
  });

  it("validate() of the models rejects a wrong type and a missing required field", () => {
    const badPort = strategicMerge(cpuDeployment(), {
      spec: { template: { spec: { containers: [{ name: "lori-server", ports: [{ containerPort: "8080" }] }] } } },
    }) as K8sObject;
    expect(schemaErrors(badPort).join("\n")).toMatch(/containerPort/);
    const noSelector = strategicMerge(cpuDeployment(), { spec: { selector: null } }) as K8sObject;
    expect(schemaErrors(noSelector).join("\n")).toMatch(/selector/);
  });

  it("the InferencePool schema rejects an unknown field, a wrong type, and a port out of range", () => {
    const pool = find(rendered.cpu, "InferencePool", "lori-server");
    expect(validatePool(strategicMerge(pool, { spec: { targetPortNumber: 8080 } }))).not.toEqual([]);
    expect(validatePool(strategicMerge(pool, { spec: { targetPorts: [{ number: "8080" }] } })).join("\n")).toMatch(
      /targetPorts\/0\/number/,
    );
    expect(validatePool(strategicMerge(pool, { spec: { targetPorts: [{ number: 70000 }] } })).join("\n")).toMatch(/65535/);
    expect(validatePool(strategicMerge(pool, { spec: { endpointPickerRef: { failureMode: "Sometimes" } } })).join("\n")).toMatch(
      /allowed values/,
    );
  });

  it("the endpoint picker config rejects a misspelt metric spec and a dangling plugin reference", () => {
    const configMap = find(rendered.cpu, "ConfigMap", "lori-server-epp") as Any;
    const text: string = configMap.data["epp-config.yaml"];
    const withText = (t: string) => ({ ...configMap, data: { "epp-config.yaml": t } }) as unknown as K8sObject;
    expect(() => parseEppConfig(withText(text.replace("kvUsageSpec:", "kvUsageSpecs:")))).toThrow(/kvUsageSpecs/);
    expect(() => parseEppConfig(withText(text.replace("- pluginRef: queue-scorer", "- pluginRef: queue-scorr")))).toThrow(/queue-scorr/);
  });
});

describe("deploy/kubernetes: the pieces fit together", () => {
  for (const overlay of OVERLAYS) {
    const objects = rendered[overlay];
    const deployment = find(objects, "Deployment", "lori-server") as Any;
    const pod = deployment.spec.template;
    const container = serverContainer(objects);

    it(`${overlay}: the InferencePool selects the model-server pods (not the picker's) on the container port`, () => {
      const pool = find(objects, "InferencePool", "lori-server") as Any;
      for (const [k, v] of Object.entries(pool.spec.selector.matchLabels)) expect(pod.metadata.labels[k]).toBe(v);
      const epp = find(objects, "Deployment", "lori-server-epp") as Any;
      expect(Object.entries(pool.spec.selector.matchLabels).every(([k, v]) => epp.spec.template.metadata.labels[k] === v)).toBe(false);
      expect(pool.spec.targetPorts.map((p: Any) => p.number)).toEqual([container.ports[0].containerPort]);
      expect(Number(flag(container, "port"))).toBe(container.ports[0].containerPort);
      const eppService = find(objects, "Service", pool.spec.endpointPickerRef.name) as Any;
      expect(eppService.spec.ports.map((p: Any) => p.port)).toContain(pool.spec.endpointPickerRef.port.number);
    });

    it(`${overlay}: the HTTPRoute sends to the pool; the picker watches that pool with the config it mounts`, () => {
      const route = find(objects, "HTTPRoute", "lori-server") as Any;
      expect(route.spec.rules[0].backendRefs[0]).toMatchObject({
        group: "inference.networking.k8s.io",
        kind: "InferencePool",
        name: "lori-server",
      });
      const epp = (find(objects, "Deployment", "lori-server-epp") as Any).spec.template.spec;
      expect(epp.containers[0].args).toEqual(expect.arrayContaining(["--pool-name=lori-server", "--config-file=/config/epp-config.yaml"]));
      expect(epp.volumes[0].configMap.name).toBe("lori-server-epp");
      expect(epp.serviceAccountName).toBe((find(objects, "RoleBinding", "lori-server-epp") as Any).subjects[0].name);
    });

    it(`${overlay}: the pods carry the engine label that selects lori-server's own metric names`, () => {
      const { engine, engineLabelKey } = parseEppConfig(find(objects, "ConfigMap", "lori-server-epp"));
      expect(pod.metadata.labels[engineLabelKey]).toBe(engine.name);
      expect(engine).toMatchObject({
        queuedRequestsSpec: "lori_queue_depth",
        runningRequestsSpec: "lori_sequences_busy",
        kvUsageSpec: "lori_kv_cache_usage_ratio",
        loraSpec: "lori_lora_requests_info",
      });
    });

    it(`${overlay}: probes, drain and grace period agree`, () => {
      expect(container.livenessProbe.httpGet.path).toBe("/health");
      expect(container.readinessProbe.exec.command.join(" ")).toMatch(/\/ready/);
      const drainSeconds = Number(flag(container, "drain-timeout-ms")) / 1000;
      const preStopSeconds = container.lifecycle.preStop.sleep.seconds;
      // Kubernetes counts the preStop hook inside the grace period.
      expect(pod.spec.terminationGracePeriodSeconds).toBeGreaterThan(preStopSeconds + drainSeconds);
    });

    it(`${overlay}: adapters and data on ReadWriteMany claims, keys from the Secret at --keys-file`, () => {
      const mounts = Object.fromEntries(container.volumeMounts.map((m: Any) => [m.name, m.mountPath]));
      const volumes = Object.fromEntries(pod.spec.volumes.map((v: Any) => [v.name, v]));
      expect(flag(container, "adapters-dir")).toBe(mounts.adapters);
      expect(flag(container, "data-dir")).toBe(mounts.data);
      // The compiled cache inside the store is each pod's own (an emptyDir mounted over <adapters-dir>/.compiled).
      expect(mounts["compiled-cache"]).toBe(`${mounts.adapters}/.compiled`);
      expect(volumes["compiled-cache"].emptyDir).toBeDefined();
      expect(flag(container, "max-training-jobs")).toBe("0");
      for (const name of ["adapters", "data"]) {
        const claim = find(objects, "PersistentVolumeClaim", volumes[name].persistentVolumeClaim.claimName) as Any;
        expect(claim.spec.accessModes).toEqual(["ReadWriteMany"]);
      }
      // 0440 in the YAML is octal for Kubernetes: owner and group may read the keys, others nothing.
      expect(volumes.keys.secret.defaultMode).toBe(0o440);
      const secret = find(objects, "Secret", volumes.keys.secret.secretName) as Any;
      const keyFile = Object.keys(secret.stringData)[0]!;
      expect(flag(container, "keys-file")).toBe(`${mounts.keys}/${keyFile}`);
      // The placeholder holds no key: the server's keys-file schema requires at least one, so it fails closed.
      expect(JSON.parse(secret.stringData[keyFile]).keys).toEqual([]);
    });
  }

  it("only the CUDA overlay asks for a GPU, and each overlay runs its own image on its own backend", () => {
    const cuda = serverContainer(rendered.cuda);
    const cpu = serverContainer(rendered.cpu);
    expect(cuda.resources.limits["nvidia.com/gpu"]).toBe("1");
    expect(cpu.resources.limits["nvidia.com/gpu"]).toBeUndefined();
    expect(cuda.env).toEqual(expect.arrayContaining([{ name: "LORI_GPU", value: "cuda" }]));
    expect(cpu.env).toEqual(expect.arrayContaining([{ name: "LORI_GPU", value: "off" }]));
    expect(cuda.image).toBe("lori-server:0.1.0-cuda");
    const cudaPod = (find(rendered.cuda, "Deployment", "lori-server") as Any).spec.template.spec;
    expect(cudaPod.initContainers[0].image).toBe("lori-server:0.1.0-cuda");
    // The patch merged into the base container instead of replacing it.
    expect(cuda.args).toEqual(cpu.args);
    expect(cuda.volumeMounts).toEqual(cpu.volumeMounts);
  });
});
