import { useState } from "preact/hooks";
import type { ModelObject } from "./api";
import type { AdapterPick, Sampling } from "./chat-request";

export function ErrorBox({ message }: { message: string | null }) {
  return message ? (
    <div class="error" role="alert">
      {message}
    </div>
  ) : null;
}

export function BasePicker({ bases, value, onChange }: { bases: ModelObject[]; value: string; onChange: (id: string) => void }) {
  return (
    <label class="field">
      <span>Base model</span>
      <select value={value} onChange={(e) => onChange(e.currentTarget.value)} data-testid="base-model">
        {bases.map((m) => (
          <option key={m.id} value={m.id}>
            {m.id}
          </option>
        ))}
      </select>
    </label>
  );
}

/** Any adapter, each with a weight: a slider over -2..2 and a number field that takes any value typed. */
export function AdapterSetBuilder({
  adapters,
  value,
  onChange,
  label = "Adapters",
  empty = "None: the base model alone.",
}: {
  adapters: Pick<ModelObject, "id">[];
  value: AdapterPick[];
  onChange: (set: AdapterPick[]) => void;
  label?: string;
  empty?: string;
}) {
  const unused = adapters.filter((a) => !value.some((p) => p.name === a.id));
  const [choice, setChoice] = useState("");
  const pick = unused.some((a) => a.id === choice) ? choice : (unused[0]?.id ?? "");
  const setWeight = (name: string, weight: number) => {
    if (Number.isFinite(weight)) onChange(value.map((p) => (p.name === name ? { ...p, weight } : p)));
  };
  return (
    <fieldset class="adapter-set" data-testid="adapter-set">
      <legend>{label}</legend>
      {value.length === 0 ? <p class="muted">{empty}</p> : null}
      {value.map((p) => (
        <div class="adapter-row" key={p.name}>
          <span class="adapter-name" title={p.name}>
            {p.name}
          </span>
          <input
            type="range"
            min={-2}
            max={2}
            step={0.05}
            value={Math.max(-2, Math.min(2, p.weight))}
            aria-label={`${p.name} weight`}
            onInput={(e) => setWeight(p.name, Number(e.currentTarget.value))}
          />
          <input
            type="number"
            step="any"
            class="weight"
            value={p.weight}
            aria-label={`${p.name} weight value`}
            onChange={(e) => setWeight(p.name, Number(e.currentTarget.value))}
          />
          <button type="button" class="icon" title={`Remove ${p.name}`} onClick={() => onChange(value.filter((q) => q.name !== p.name))}>
            ×
          </button>
        </div>
      ))}
      {unused.length > 0 ? (
        <div class="adapter-add">
          <select value={pick} onChange={(e) => setChoice(e.currentTarget.value)} aria-label="Adapter to add" data-testid="adapter-choice">
            {unused.map((a) => (
              <option key={a.id} value={a.id}>
                {a.id}
              </option>
            ))}
          </select>
          <button type="button" onClick={() => pick && onChange([...value, { name: pick, weight: 1 }])} data-testid="adapter-add">
            Add
          </button>
        </div>
      ) : null}
    </fieldset>
  );
}

function NumberField({
  label,
  value,
  step,
  min,
  max,
  onChange,
}: {
  label: string;
  value: number;
  step: number;
  min?: number;
  max?: number;
  onChange: (v: number) => void;
}) {
  return (
    <label class="field">
      <span>{label}</span>
      <input
        type="number"
        value={value}
        step={step}
        min={min}
        max={max}
        name={label.replaceAll(" ", "_")}
        onChange={(e) => {
          const v = Number(e.currentTarget.value);
          if (e.currentTarget.value !== "" && Number.isFinite(v)) onChange(v);
        }}
      />
    </label>
  );
}

export function SamplingForm({ value, onChange }: { value: Sampling; onChange: (s: Sampling) => void }) {
  const set = (key: Exclude<keyof Sampling, "ignore_eos" | "seed">) => (v: number) => onChange({ ...value, [key]: v });
  return (
    <fieldset class="sampling" data-testid="sampling">
      <legend>Sampling</legend>
      <NumberField label="temperature" value={value.temperature} step={0.05} min={0} max={2} onChange={set("temperature")} />
      <NumberField label="top p" value={value.top_p} step={0.05} min={0.01} max={1} onChange={set("top_p")} />
      <NumberField label="top k" value={value.top_k} step={1} min={0} onChange={set("top_k")} />
      <NumberField label="max tokens" value={value.max_tokens} step={1} min={1} onChange={set("max_tokens")} />
      <label class="field">
        <span>seed</span>
        <input
          type="number"
          name="seed"
          placeholder="random"
          value={value.seed ?? ""}
          onChange={(e) => {
            const text = e.currentTarget.value;
            onChange({ ...value, seed: text === "" ? null : Math.trunc(Number(text)) });
          }}
        />
      </label>
      <label class="check" title="keep generating past end-of-sequence (extension)">
        <input
          type="checkbox"
          name="ignore_eos"
          checked={value.ignore_eos}
          onChange={(e) => onChange({ ...value, ignore_eos: e.currentTarget.checked })}
        />
        <span>ignore EOS</span>
      </label>
    </fieldset>
  );
}

/** Copies to the clipboard; where the page may not (plain http off localhost) the text is shown to copy by hand. */
export function CopyButton({ label, text }: { label: string; text: () => string }) {
  const [state, setState] = useState<"idle" | "copied" | { manual: string }>("idle");
  const copy = async () => {
    const value = text();
    try {
      await navigator.clipboard.writeText(value);
      setState("copied");
      setTimeout(() => setState("idle"), 1500);
    } catch {
      setState({ manual: value });
    }
  };
  return (
    <span class="copy">
      <button type="button" class="link" onClick={copy}>
        {state === "copied" ? "Copied" : label}
      </button>
      {typeof state === "object" ? (
        <div class="manual-copy">
          <pre>{state.manual}</pre>
          <button type="button" class="link" onClick={() => setState("idle")}>
            close
          </button>
        </div>
      ) : null}
    </span>
  );
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
