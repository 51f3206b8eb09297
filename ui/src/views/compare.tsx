import { useRef, useState } from "preact/hooks";
import { errorText, isAbort } from "../api";
import {
  type AdapterPick,
  type AnswerStats,
  chatRequestBody,
  DEFAULT_SAMPLING,
  describeSet,
  type Sampling,
  streamChat,
} from "../chat-request";
import { AdapterSetBuilder, BasePicker, ErrorBox, SamplingForm } from "../components";
import { diffWords } from "../diff";
import { useModels } from "../models";
import { Stats } from "./chat";

interface Column {
  set: AdapterPick[];
  answer: string;
  stats: AnswerStats | null;
  state: "idle" | "streaming" | "done" | "stopped" | "failed";
  error: string | null;
}

const emptyColumn = (set: AdapterPick[]): Column => ({ set, answer: "", stats: null, state: "idle", error: null });

/** One prompt on 2-4 adapter sets at once: each streams on its own request, so the server's lanes run them together. */
export function CompareView() {
  const models = useModels();
  const [model, setModel] = useState("");
  const [sampling, setSampling] = useState<Sampling>({ ...DEFAULT_SAMPLING, temperature: 0 });
  const [prompt, setPrompt] = useState("");
  const [columns, setColumns] = useState<Column[]>([emptyColumn([]), emptyColumn([])]);
  const abort = useRef<AbortController | null>(null);
  const busy = columns.some((c) => c.state === "streaming");
  const base = model || models.bases[0]?.id || "";

  const update = (index: number, change: Partial<Column>) =>
    setColumns((all) => all.map((c, i) => (i === index ? { ...c, ...change } : c)));

  const run = () => {
    const text = prompt.trim();
    if (!text || busy || !base) return;
    const controller = new AbortController();
    abort.current = controller;
    setColumns((all) => all.map((c) => ({ ...emptyColumn(c.set), state: "streaming" })));
    columns.forEach((column, index) => {
      let answer = "";
      const body = chatRequestBody(base, [{ role: "user", content: text }], column.set, sampling);
      streamChat(body, controller.signal, (piece) => {
        answer += piece;
        update(index, { answer });
      }).then(
        (stats) => update(index, { stats, state: "done" }),
        (error) => update(index, isAbort(error) ? { state: "stopped" } : { state: "failed", error: errorText(error) }),
      );
    });
  };

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      run();
    }
  };

  return (
    <div class="compare">
      <div class="panel compare-controls">
        <BasePicker bases={models.bases} value={base} onChange={setModel} />
        <SamplingForm value={sampling} onChange={setSampling} />
      </div>
      <ErrorBox message={models.error} />
      <div class="composer">
        <textarea
          rows={2}
          placeholder="Prompt for every set (Enter runs, Shift+Enter new line)"
          value={prompt}
          onInput={(e) => setPrompt(e.currentTarget.value)}
          onKeyDown={onKeyDown}
          data-testid="compare-prompt"
        />
        {busy ? (
          <button type="button" class="danger" onClick={() => abort.current?.abort()}>
            Stop
          </button>
        ) : (
          <button type="button" class="primary" onClick={run} disabled={!prompt.trim() || !base} data-testid="compare-run">
            Run
          </button>
        )}
      </div>
      <div class="columns" data-count={columns.length}>
        {columns.map((column, index) => (
          <section class="panel column" key={index} data-testid="compare-column" data-state={column.state}>
            <header class="column-head">
              <strong>Set {index + 1}</strong>
              {columns.length > 2 ? (
                <button type="button" class="link" disabled={busy} onClick={() => setColumns(columns.filter((_, i) => i !== index))}>
                  remove
                </button>
              ) : null}
            </header>
            <AdapterSetBuilder
              adapters={models.adapters}
              value={column.set}
              onChange={(set) => update(index, { set })}
              label={describeSet(column.set)}
            />
            <div class="compare-answer" data-testid="compare-answer">
              <DiffText answer={column.answer} reference={(index === 0 ? columns[1] : columns[0])?.answer ?? ""} ready={!busy} />
            </div>
            <ErrorBox message={column.error} />
            <div class="answer-meta">
              {column.stats ? <Stats stats={column.stats} /> : null}
              {column.state === "stopped" ? <span class="badge">stopped</span> : null}
            </div>
          </section>
        ))}
      </div>
      {columns.length < 4 ? (
        <button type="button" disabled={busy} onClick={() => setColumns([...columns, emptyColumn([])])} data-testid="compare-add-set">
          Add a set
        </button>
      ) : null}
      <p class="muted">Marked words differ from the first set's answer (the first set is compared with the second).</p>
    </div>
  );
}

/** The answer, with the words that are not in the reference answer marked (once all streams have ended). */
function DiffText({ answer, reference, ready }: { answer: string; reference: string; ready: boolean }) {
  if (!ready || !reference || !answer) return <div class="answer-text">{answer}</div>;
  return (
    <div class="answer-text">
      {diffWords(reference, answer).map((part, i) => (part.changed ? <mark key={i}>{part.text}</mark> : part.text))}
    </div>
  );
}
