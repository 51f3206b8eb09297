import { useEffect, useState } from "preact/hooks";
import { type AdapterObject, apiFetch, errorText, getJson, sendJson } from "../api";
import type { AdapterPick } from "../chat-request";
import { AdapterSetBuilder, ErrorBox, formatBytes } from "../components";
import { Heatmap } from "../heatmap";
import { ADAPTERS_CHANGED, announceAdaptersChanged } from "../models";

interface ModuleReport {
  layer: number;
  module: string;
  rank: number;
  sparsity: number;
}

interface ModulesReport {
  variant: string;
  modules: number;
  ranks: { min: number; max: number };
  sparsity: number;
  bytesOnDisk: number;
  denseFp16PeftBytes: number;
  ratioToDenseFp16: number;
  perModule: ModuleReport[];
}

interface PairReport {
  crossTermRatio: number | null;
  maskOverlap: number;
  principalAnglesDeg: { min: number; mean: number; max: number } | null;
}

const AUTO_INTERFERENCE_MAX = 8;

const VARIANT_NAMES: Record<string, string> = { lora: "LoRA", "lori-d": "LoRI-D", "lori-s": "LoRI-S" };

/** The adapter store: table, per-module sparsity, pairwise interference; merge, upload and delete for admins. */
export function AdaptersView({ admin, onTry }: { admin: boolean; onTry: (set: AdapterPick[]) => void }) {
  const [adapters, setAdapters] = useState<AdapterObject[]>([]);
  const [reports, setReports] = useState<Record<string, ModulesReport>>({});
  const [selected, setSelected] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [version, setVersion] = useState(0);

  useEffect(() => {
    const bump = () => setVersion((v) => v + 1);
    window.addEventListener(ADAPTERS_CHANGED, bump);
    return () => window.removeEventListener(ADAPTERS_CHANGED, bump);
  }, []);

  useEffect(() => {
    let live = true;
    getJson<{ data: AdapterObject[] }>("/adapters")
      .then(async ({ data }) => {
        if (!live) return;
        setAdapters(data);
        setError(null);
        const entries = await Promise.all(
          data.map(async (a) => [a.hash, await getJson<ModulesReport>(`/adapters/${encodeURIComponent(a.id)}/modules`)] as const),
        );
        if (live) setReports(Object.fromEntries(entries));
      })
      .catch((e) => live && setError(errorText(e)));
    return () => {
      live = false;
    };
  }, [version]);

  const remove = async (name: string) => {
    try {
      await sendJson("DELETE", `/adapters/${encodeURIComponent(name)}`);
      if (selected === name) setSelected(null);
      announceAdaptersChanged();
    } catch (e) {
      setError(errorText(e));
    }
  };

  const detail = adapters.find((a) => a.id === selected);
  return (
    <div class="adapters">
      <ErrorBox message={error} />
      <div class="table-wrap">
        <table class="data" data-testid="adapters-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Variant</th>
              <th>Rank</th>
              <th>Sparsity</th>
              <th>Size</th>
              <th title="file size over the same modules as a dense fp16 PEFT file">vs dense</th>
              <th>Base</th>
              <th>Lineage</th>
              <th>Content hash</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {adapters.map((a) => {
              const report = reports[a.hash];
              return (
                <tr key={a.id} data-adapter={a.id} class={a.id === selected ? "selected" : undefined}>
                  <td>
                    <button type="button" class="link" onClick={() => setSelected(a.id === selected ? null : a.id)}>
                      {a.id}
                    </button>
                  </td>
                  <td>{VARIANT_NAMES[a.lori.variant] ?? a.lori.variant}</td>
                  <td class="num">
                    {report
                      ? report.ranks.min === report.ranks.max
                        ? report.ranks.min
                        : `${report.ranks.min}–${report.ranks.max}`
                      : a.lori.rank}
                  </td>
                  <td class="num">{(a.lori.sparsity * 100).toFixed(0)}%</td>
                  <td class="num" title="adapter_model.safetensors">
                    {formatBytes(report?.bytesOnDisk ?? a.bytes)}
                  </td>
                  <td class="num">{report ? `${(report.ratioToDenseFp16 * 100).toFixed(1)}%` : "…"}</td>
                  <td>{a.parent ?? <span class="muted">unknown</span>}</td>
                  <td>{describeLineage(a.lori.lineage)}</td>
                  <td>
                    <code title={a.hash}>{a.hash.slice(0, 12)}</code>
                  </td>
                  <td class="actions">
                    <button type="button" class="link" onClick={() => onTry([{ name: a.id, weight: 1 }])}>
                      chat
                    </button>
                    {admin ? <DeleteButton onConfirm={() => void remove(a.id)} /> : null}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {adapters.length === 0 && !error ? <p class="muted">No adapters in the store.</p> : null}
      {detail && reports[detail.hash] ? <ModuleHeatmap name={detail.id} report={reports[detail.hash]!} /> : null}
      <Interference names={adapters.map((a) => a.id)} version={version} />
      {admin ? (
        <div class="admin-forms">
          <MergeForm adapters={adapters} />
          <UploadForm />
        </div>
      ) : null}
    </div>
  );
}

/** Merge parents with their weights, or the training run (method, data file, seed). */
function describeLineage(lineage: unknown[]): string {
  if (lineage.length === 0) return "–";
  return lineage
    .map((step) => {
      const s = step as {
        op?: string;
        method?: string;
        inputs?: Array<{ name?: string | null; weight?: number }>;
        data?: { file?: string };
        seed?: number;
      };
      if (s.op === "merge" && Array.isArray(s.inputs))
        return `${s.method ?? "merge"}(${s.inputs.map((i) => `${i.name ?? "?"}×${i.weight ?? 1}`).join(", ")})`;
      if (s.op === "train") return `trained ${s.method ?? ""} on ${s.data?.file ?? "?"} (seed ${s.seed ?? "?"})`;
      return s.op ?? "?";
    })
    .join(" → ");
}

function DeleteButton({ onConfirm }: { onConfirm: () => void }) {
  const [armed, setArmed] = useState(false);
  return armed ? (
    <button type="button" class="link danger-text" onClick={onConfirm} onBlur={() => setArmed(false)}>
      confirm delete
    </button>
  ) : (
    <button type="button" class="link" onClick={() => setArmed(true)}>
      delete
    </button>
  );
}

function ModuleHeatmap({ name, report }: { name: string; report: ModulesReport }) {
  const layers = [...new Set(report.perModule.map((m) => m.layer))].sort((a, b) => a - b);
  const modules = [...new Set(report.perModule.map((m) => m.module))];
  const at = new Map(report.perModule.map((m) => [`${m.layer}:${m.module}`, m.sparsity]));
  return (
    <section class="panel">
      <h2>
        {name}: sparsity per module ({report.modules} modules, {formatBytes(report.bytesOnDisk)} vs {formatBytes(report.denseFp16PeftBytes)}{" "}
        dense fp16)
      </h2>
      <Heatmap
        testId="module-heatmap"
        rows={layers.map((l) => `layer ${l}`)}
        columns={modules}
        value={(i, j) => at.get(`${layers[i]}:${modules[j]}`) ?? null}
        min={0}
        max={1}
        format={(v) => `${(v * 100).toFixed(0)}%`}
      />
    </section>
  );
}

/** Cross-term ratio of every pair (how much a linear merge of the two departs from their exact sum). */
function Interference({ names, version }: { names: string[]; version: number }) {
  const [pairs, setPairs] = useState<Record<string, PairReport>>({});
  const [error, setError] = useState<string | null>(null);
  // Each pair reads both adapters on the server: a large store computes its n(n-1)/2 pairs only when asked.
  const [requested, setRequested] = useState(false);
  const automatic = names.length <= AUTO_INTERFERENCE_MAX;
  const key = names.join(",");
  useEffect(() => {
    if (!automatic && !requested) return;
    let live = true;
    const jobs: Array<Promise<readonly [string, PairReport]>> = [];
    names.forEach((a, i) => {
      for (const b of names.slice(i + 1)) {
        jobs.push(
          getJson<PairReport>(`/adapters/${encodeURIComponent(a)}/interference?with=${encodeURIComponent(b)}`).then(
            (r) => [`${a}|${b}`, r] as const,
          ),
        );
      }
    });
    Promise.all(jobs).then(
      (entries) => {
        if (!live) return;
        setPairs(Object.fromEntries(entries));
        setError(null);
      },
      (e) => live && setError(errorText(e)),
    );
    return () => {
      live = false;
    };
  }, [key, version, requested]);
  if (names.length < 2) return null;
  if (!automatic && !requested) {
    return (
      <section class="panel">
        <h2>Interference of each pair</h2>
        <button type="button" onClick={() => setRequested(true)}>
          Compute all {(names.length * (names.length - 1)) / 2} pairs
        </button>
      </section>
    );
  }
  const pair = (i: number, j: number) => (i === j ? undefined : (pairs[`${names[Math.min(i, j)]}|${names[Math.max(i, j)]}`] ?? undefined));
  return (
    <section class="panel">
      <h2>Interference of each pair</h2>
      <ErrorBox message={error} />
      <div class="heatmaps">
        <div>
          <h3>Cross-term ratio (0 = merge is exact)</h3>
          <Heatmap
            testId="interference-heatmap"
            rows={names}
            columns={names}
            value={(i, j) => pair(i, j)?.crossTermRatio ?? null}
            min={0}
            max={Math.max(1e-9, ...Object.values(pairs).map((p) => p.crossTermRatio ?? 0))}
            format={(v) => v.toFixed(3)}
          />
        </div>
        <div>
          <h3>Mean principal angle between A spaces (90° = orthogonal)</h3>
          <Heatmap
            testId="angle-heatmap"
            rows={names}
            columns={names}
            value={(i, j) => pair(i, j)?.principalAnglesDeg?.mean ?? null}
            min={0}
            max={90}
            format={(v) => `${v.toFixed(1)}°`}
          />
        </div>
      </div>
    </section>
  );
}

/** The server's merge methods (POST /adapters/merge), with what each does in a few words. */
const MERGE_METHODS = {
  linear: "linear: weighted sum of A and B",
  cat: "cat: stacked ranks, the exact weighted sum",
  ties: "ties: prune, elect signs, disjoint mean",
  dare_linear: "dare_linear: random drop and rescale, then sum",
  dare_ties: "dare_ties: random drop, elect signs, disjoint mean",
  magnitude_prune: "magnitude_prune: keep the largest entries, then sum",
  svd: "svd: exact sum, truncated to a rank",
} as const;
type MergeMethod = keyof typeof MERGE_METHODS;
/** Methods that keep a fraction of each task's entries (`density`, server default 0.5). */
const PRUNING: readonly MergeMethod[] = ["ties", "dare_linear", "dare_ties", "magnitude_prune"];

function MergeForm({ adapters }: { adapters: AdapterObject[] }) {
  const [method, setMethod] = useState<MergeMethod>("linear");
  const [density, setDensity] = useState("");
  const [set, setSet] = useState<AdapterPick[]>([]);
  const [name, setName] = useState("");
  const [message, setMessage] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    setMessage(null);
    try {
      const pruning = PRUNING.includes(method) && density.trim() !== "" ? { density: Number(density) } : {};
      const created = await sendJson<AdapterObject>("POST", "/adapters/merge", { method, adapters: set, name: name.trim(), ...pruning });
      setMessage(`Created ${created.id}.`);
      setName("");
      setSet([]);
      announceAdaptersChanged();
    } catch (failure) {
      setError(errorText(failure));
    }
  };
  const options = adapters.map((a) => ({ id: a.id, parent: a.parent }));
  return (
    <form class="panel" onSubmit={submit} data-testid="merge-form">
      <h2>Merge</h2>
      <label class="field">
        <span>Method</span>
        <select value={method} onChange={(e) => setMethod(e.currentTarget.value as MergeMethod)} name="method">
          {Object.entries(MERGE_METHODS).map(([value, label]) => (
            <option value={value}>{label}</option>
          ))}
        </select>
      </label>
      {PRUNING.includes(method) ? (
        <label class="field">
          <span>Density (fraction kept, 0 to 1; default 0.5)</span>
          <input value={density} onInput={(e) => setDensity(e.currentTarget.value)} name="density" inputMode="decimal" placeholder="0.5" />
        </label>
      ) : null}
      <AdapterSetBuilder
        adapters={options}
        value={set}
        onChange={setSet}
        label="Inputs and weights"
        empty="Add two or more adapters to merge."
      />
      <label class="field">
        <span>New adapter name</span>
        <input value={name} onInput={(e) => setName(e.currentTarget.value)} name="merge-name" required />
      </label>
      <button type="submit" class="primary" disabled={set.length === 0 || !name.trim()}>
        Merge
      </button>
      {message ? <p class="ok">{message}</p> : null}
      <ErrorBox message={error} />
    </form>
  );
}

function UploadForm() {
  const [message, setMessage] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    setError(null);
    setMessage(null);
    try {
      const response = await apiFetch("/adapters", { method: "POST", body: new FormData(form) });
      const created = (await response.json()) as AdapterObject;
      setMessage(`Uploaded ${created.id}.`);
      form.reset();
      announceAdaptersChanged();
    } catch (failure) {
      setError(errorText(failure));
    }
  };
  return (
    <form class="panel" onSubmit={submit} data-testid="upload-form">
      <h2>Upload a PEFT adapter</h2>
      <label class="field">
        <span>Name</span>
        <input name="name" required />
      </label>
      <label class="field">
        <span>adapter_config.json</span>
        <input type="file" name="adapter_config.json" accept=".json,application/json" required />
      </label>
      <label class="field">
        <span>adapter_model.safetensors</span>
        <input type="file" name="adapter_model.safetensors" accept=".safetensors" required />
      </label>
      <button type="submit" class="primary">
        Upload
      </button>
      {message ? <p class="ok">{message}</p> : null}
      <ErrorBox message={error} />
    </form>
  );
}
