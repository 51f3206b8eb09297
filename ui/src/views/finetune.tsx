import { useEffect, useState } from "preact/hooks";
import { apiFetch, errorText, getJson, sendJson } from "../api";
import type { AdapterPick } from "../chat-request";
import { BasePicker, ErrorBox } from "../components";
import { announceAdaptersChanged, useModels } from "../models";

interface FileObject {
  id: string;
  filename: string;
  bytes: number;
  purpose: string;
}

interface Job {
  id: string;
  model: string;
  status: "validating_files" | "queued" | "running" | "succeeded" | "failed" | "cancelled";
  fine_tuned_model: string | null;
  created_at: number;
  trained_tokens: number | null;
  error: { message?: string } | null;
}

interface JobEvent {
  id: string;
  type: "message" | "metrics";
  message: string;
  data: { step?: number; train_loss?: number | null; valid_loss?: number | null } | null;
}

/** Every event of a job, newest first, following the API's pages of 100. */
async function allEvents(jobId: string): Promise<JobEvent[]> {
  const events: JobEvent[] = [];
  for (let after = ""; events.length < 100_000; ) {
    const page = await getJson<{ data: JobEvent[]; has_more: boolean }>(
      `/v1/fine_tuning/jobs/${encodeURIComponent(jobId)}/events?limit=100${after}`,
    );
    events.push(...page.data);
    const last = page.data.at(-1);
    if (!page.has_more || !last) break;
    after = `&after=${encodeURIComponent(last.id)}`;
  }
  return events;
}

const ACTIVE = new Set<Job["status"]>(["validating_files", "queued", "running"]);
const POLL_MS = 1500;

/** Upload a JSONL, start a job, watch its loss, cancel it, try the result in Chat (OpenAI's fine-tuning API). */
export function FinetuneView({ allowed, active, onTry }: { allowed: boolean; active: boolean; onTry: (set: AdapterPick[]) => void }) {
  const [files, setFiles] = useState<FileObject[]>([]);
  const [jobs, setJobs] = useState<Job[]>([]);
  const [selected, setSelected] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [version, setVersion] = useState(0);
  const refresh = () => setVersion((v) => v + 1);

  useEffect(() => {
    if (!allowed || !active) return;
    let live = true;
    Promise.all([getJson<{ data: FileObject[] }>("/v1/files"), getJson<{ data: Job[] }>("/v1/fine_tuning/jobs?limit=50")]).then(
      ([f, j]) => {
        if (!live) return;
        setFiles(f.data.filter((file) => file.purpose === "fine-tune"));
        setJobs(j.data);
        setError(null);
      },
      (e) => live && setError(errorText(e)),
    );
    return () => {
      live = false;
    };
  }, [allowed, active, version]);

  // While a job is on its way, the list is polled; a job that just succeeded adds a model everywhere.
  const anyActive = jobs.some((j) => ACTIVE.has(j.status));
  useEffect(() => {
    if (!anyActive || !active) return;
    const timer = setInterval(refresh, POLL_MS);
    return () => {
      clearInterval(timer);
      announceAdaptersChanged();
    };
  }, [anyActive, active]);

  if (!allowed) return <p class="muted">This key may not fine-tune (it needs an admin key or the "train" grant).</p>;
  const job = jobs.find((j) => j.id === selected) ?? null;
  return (
    <div class="finetune">
      <ErrorBox message={error} />
      <div class="admin-forms">
        <UploadTrainingFile onUploaded={refresh} />
        <NewJob
          files={files}
          onCreated={(id) => {
            setSelected(id);
            refresh();
          }}
        />
      </div>
      <section class="panel">
        <h2>Jobs</h2>
        {jobs.length === 0 ? <p class="muted">No jobs yet.</p> : null}
        <div class="table-wrap">
          <table class="data" data-testid="jobs-table">
            <thead>
              <tr>
                <th>Job</th>
                <th>Base</th>
                <th>Status</th>
                <th>Fine-tuned model</th>
                <th>Tokens</th>
              </tr>
            </thead>
            <tbody>
              {jobs.map((j) => (
                <tr key={j.id} data-job={j.id} data-status={j.status} class={j.id === selected ? "selected" : undefined}>
                  <td>
                    <button type="button" class="link" onClick={() => setSelected(j.id === selected ? null : j.id)}>
                      {j.id}
                    </button>
                  </td>
                  <td>{j.model}</td>
                  <td>
                    <span class="badge">{j.status}</span>
                  </td>
                  <td>{j.fine_tuned_model ?? "–"}</td>
                  <td class="num">{j.trained_tokens ?? "–"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      {job ? <JobDetail key={job.id} job={job} onChanged={refresh} onTry={onTry} /> : null}
    </div>
  );
}

function UploadTrainingFile({ onUploaded }: { onUploaded: () => void }) {
  const [problems, setProblems] = useState<string[]>([]);
  const [message, setMessage] = useState<string | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    setProblems([]);
    setMessage(null);
    const body = new FormData(form);
    body.set("purpose", "fine-tune");
    try {
      const file = (await (await apiFetch("/v1/files", { method: "POST", body })).json()) as FileObject;
      setMessage(`Uploaded ${file.filename} as ${file.id}.`);
      form.reset();
      onUploaded();
    } catch (failure) {
      // The server names each bad line ("line 3: ...; line 7: ..."): one list item per line.
      const text = errorText(failure);
      const head = /^(\d{3}: )?(.*?)(line \d+:.*)$/s.exec(text);
      setProblems(
        head
          ? [head[1] ? `${head[1]}${head[2]}`.trim() : head[2]!.trim(), ...head[3]!.split(/; (?=line \d+:|and more$)/)].filter(Boolean)
          : [text],
      );
    }
  };
  return (
    <form class="panel" onSubmit={submit} data-testid="training-file-form">
      <h2>Training file</h2>
      <p class="muted">
        JSONL: chat {"{messages}"}, {"{prompt, completion}"} or {"{text}"} per line.
      </p>
      <label class="field">
        <span>File</span>
        <input type="file" name="file" accept=".jsonl,application/jsonl,application/json" required />
      </label>
      <button type="submit" class="primary">
        Upload
      </button>
      {message ? <p class="ok">{message}</p> : null}
      {problems.length > 0 ? (
        <ul class="error problems" role="alert" data-testid="file-problems">
          {problems.map((p) => (
            <li key={p}>{p}</li>
          ))}
        </ul>
      ) : null}
    </form>
  );
}

/** A hyperparameter field: a number, or empty for "auto". */
function AutoField({ label, name }: { label: string; name: string }) {
  return (
    <label class="field">
      <span>{label}</span>
      <input name={name} inputMode="decimal" placeholder="auto" />
    </label>
  );
}

function NewJob({ files, onCreated }: { files: FileObject[]; onCreated: (id: string) => void }) {
  const models = useModels();
  const [model, setModel] = useState("");
  const [error, setError] = useState<string | null>(null);
  const base = model || models.bases[0]?.id || "";
  const submit = async (e: Event) => {
    e.preventDefault();
    setError(null);
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const value = (name: string) => String(form.get(name) ?? "").trim();
    const hyper = (name: string) => (value(name) === "" ? "auto" : Number(value(name)));
    try {
      const job = await sendJson<Job>("POST", "/v1/fine_tuning/jobs", {
        model: base,
        training_file: value("training_file"),
        ...(value("suffix") ? { suffix: value("suffix") } : {}),
        method: {
          type: "supervised",
          supervised: {
            hyperparameters: {
              n_epochs: hyper("n_epochs"),
              batch_size: hyper("batch_size"),
              learning_rate_multiplier: hyper("learning_rate_multiplier"),
            },
          },
        },
        lori: { method: value("lori_method") },
      });
      onCreated(job.id);
    } catch (failure) {
      setError(errorText(failure));
    }
  };
  return (
    <form class="panel" onSubmit={submit} data-testid="new-job-form">
      <h2>New job</h2>
      <BasePicker bases={models.bases} value={base} onChange={setModel} />
      <label class="field">
        <span>Training file</span>
        <select name="training_file" required>
          {files.map((f) => (
            <option key={f.id} value={f.id}>
              {f.filename} ({f.id})
            </option>
          ))}
        </select>
      </label>
      <div class="sampling">
        <label class="field">
          <span>method</span>
          <select name="lori_method">
            <option value="lori-d">LoRI-D</option>
            <option value="lori-s">LoRI-S</option>
            <option value="lora">LoRA</option>
          </select>
        </label>
        <AutoField label="epochs" name="n_epochs" />
        <AutoField label="batch size" name="batch_size" />
        <AutoField label="lr multiplier" name="learning_rate_multiplier" />
        <label class="field">
          <span>suffix</span>
          <input name="suffix" maxLength={40} />
        </label>
      </div>
      <button type="submit" class="primary" disabled={files.length === 0 || !base}>
        Start
      </button>
      <ErrorBox message={error} />
    </form>
  );
}

function JobDetail({ job, onChanged, onTry }: { job: Job; onChanged: () => void; onTry: (set: AdapterPick[]) => void }) {
  const [events, setEvents] = useState<JobEvent[]>([]);
  const [error, setError] = useState<string | null>(null);
  const running = ACTIVE.has(job.status);
  useEffect(() => {
    let live = true;
    const load = () =>
      allEvents(job.id).then(
        (all) => live && setEvents(all),
        (e) => live && setError(errorText(e)),
      );
    void load();
    const timer = running ? setInterval(load, POLL_MS) : undefined;
    return () => {
      live = false;
      if (timer) clearInterval(timer);
    };
  }, [job.id, running]);

  const cancel = async () => {
    try {
      await sendJson("POST", `/v1/fine_tuning/jobs/${encodeURIComponent(job.id)}/cancel`);
      onChanged();
    } catch (e) {
      setError(errorText(e));
    }
  };
  const metrics = events
    .filter((e) => e.type === "metrics" && typeof e.data?.step === "number")
    .map((e) => e.data!)
    .sort((a, b) => a.step! - b.step!);
  const train = metrics.filter((m) => typeof m.train_loss === "number").map((m) => [m.step!, m.train_loss!] as const);
  const valid = metrics.filter((m) => typeof m.valid_loss === "number").map((m) => [m.step!, m.valid_loss!] as const);
  return (
    <section class="panel" data-testid="job-detail">
      <h2>
        {job.id}: {job.status}
      </h2>
      <div class="job-actions">
        {running ? (
          <button type="button" class="danger" onClick={cancel}>
            Cancel job
          </button>
        ) : null}
        {job.status === "succeeded" && job.fine_tuned_model ? (
          <button type="button" class="primary" onClick={() => onTry([{ name: job.fine_tuned_model!, weight: 1 }])}>
            Try it in Chat
          </button>
        ) : null}
      </div>
      <ErrorBox message={job.error?.message ?? error} />
      <LossChart train={train} valid={valid} />
      <details>
        <summary>Events ({events.length})</summary>
        <ul class="events">
          {events.map((e) => (
            <li key={e.id}>{e.message}</li>
          ))}
        </ul>
      </details>
    </section>
  );
}

/** Loss per token by step: training loss as a line, validation loss as dots. */
function LossChart({ train, valid }: { train: ReadonlyArray<readonly [number, number]>; valid: ReadonlyArray<readonly [number, number]> }) {
  const width = 600;
  const height = 200;
  const pad = 36;
  const all = [...train, ...valid];
  if (all.length === 0)
    return (
      <p class="muted" data-testid="loss-chart" data-points={0}>
        No loss reported yet.
      </p>
    );
  const maxStep = Math.max(1, ...all.map(([s]) => s));
  const maxLoss = Math.max(...all.map(([, l]) => l));
  const minLoss = Math.min(0, ...all.map(([, l]) => l));
  const x = (step: number) => pad + (step / maxStep) * (width - pad - 8);
  const y = (loss: number) => 8 + (1 - (loss - minLoss) / (maxLoss - minLoss || 1)) * (height - pad - 8);
  const path = train.map(([s, l], i) => `${i === 0 ? "M" : "L"}${x(s).toFixed(1)},${y(l).toFixed(1)}`).join(" ");
  return (
    <figure class="loss" data-testid="loss-chart" data-points={train.length}>
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label="Loss by step">
        <line x1={pad} y1={height - pad} x2={width - 8} y2={height - pad} class="axis" />
        <line x1={pad} y1={8} x2={pad} y2={height - pad} class="axis" />
        <text x={pad - 4} y={y(maxLoss) + 4} class="tick" text-anchor="end">
          {maxLoss.toFixed(2)}
        </text>
        <text x={pad - 4} y={y(minLoss) + 4} class="tick" text-anchor="end">
          {minLoss.toFixed(2)}
        </text>
        <text x={width - 8} y={height - pad + 16} class="tick" text-anchor="end">
          step {maxStep}
        </text>
        {train.length > 1 ? <path d={path} class="line" /> : null}
        {valid.map(([s, l]) => (
          <circle key={s} cx={x(s)} cy={y(l)} r={3} class="dot" />
        ))}
      </svg>
      <figcaption class="muted">
        training loss per token (line){valid.length > 0 ? ", validation loss (dots)" : ""}; last {train.at(-1)?.[1].toFixed(3) ?? "–"}
      </figcaption>
    </figure>
  );
}
