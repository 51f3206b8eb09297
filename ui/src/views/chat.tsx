import { useEffect, useRef, useState } from "preact/hooks";
import { errorText, isAbort, storedApiKey } from "../api";
import {
  type AdapterPick,
  type AnswerStats,
  type ChatMessage,
  chatRequestBody,
  curlSnippet,
  DEFAULT_SAMPLING,
  describeSet,
  openaiNodeSnippet,
  type Sampling,
  streamChat,
} from "../chat-request";
import { AdapterSetBuilder, BasePicker, CopyButton, ErrorBox, SamplingForm } from "../components";
import { Markdown } from "../markdown";
import { useModels } from "../models";

interface Turn {
  question: string;
  answer: string;
  set: AdapterPick[];
  body: Record<string, unknown>;
  stats: AnswerStats | null;
  state: "streaming" | "done" | "stopped" | "failed";
  error: string | null;
}

/** Chat with one base model and an adapter set; "try it" elsewhere opens this view with a set chosen. */
export function ChatView({ preset }: { preset: AdapterPick[] | null }) {
  const models = useModels();
  const [model, setModel] = useState("");
  const [set, setSet] = useState<AdapterPick[]>([]);
  const [sampling, setSampling] = useState<Sampling>(DEFAULT_SAMPLING);
  const [system, setSystem] = useState("");
  const [input, setInput] = useState("");
  const [turns, setTurns] = useState<Turn[]>([]);
  const abort = useRef<AbortController | null>(null);
  const busy = turns.some((t) => t.state === "streaming");
  const base = model || models.bases[0]?.id || "";

  useEffect(() => {
    if (preset) setSet(preset);
  }, [preset]);

  const update = (index: number, change: Partial<Turn>) => setTurns((all) => all.map((t, i) => (i === index ? { ...t, ...change } : t)));

  const send = async () => {
    const question = input.trim();
    if (!question || busy || !base) return;
    const history: ChatMessage[] = [
      ...(system.trim() ? [{ role: "system" as const, content: system.trim() }] : []),
      ...turns
        .filter((t) => t.state !== "failed")
        .flatMap((t): ChatMessage[] => [
          { role: "user", content: t.question },
          { role: "assistant", content: t.answer },
        ]),
      { role: "user", content: question },
    ];
    const body = chatRequestBody(base, history, set, sampling);
    const index = turns.length;
    setTurns((all) => [...all, { question, answer: "", set, body, stats: null, state: "streaming", error: null }]);
    setInput("");
    const controller = new AbortController();
    abort.current = controller;
    let answer = "";
    try {
      const stats = await streamChat(body, controller.signal, (piece) => {
        answer += piece;
        update(index, { answer });
      });
      update(index, { stats, state: "done" });
    } catch (error) {
      if (isAbort(error)) update(index, { state: "stopped" });
      else update(index, { state: "failed", error: errorText(error) });
    } finally {
      abort.current = null;
    }
  };

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      void send();
    }
  };

  return (
    <div class="chat-layout">
      <aside class="panel settings">
        <BasePicker bases={models.bases} value={base} onChange={setModel} />
        <AdapterSetBuilder adapters={models.adapters} value={set} onChange={setSet} />
        <SamplingForm value={sampling} onChange={setSampling} />
        <label class="field">
          <span>System prompt</span>
          <textarea rows={3} value={system} onInput={(e) => setSystem(e.currentTarget.value)} />
        </label>
        {turns.length > 0 ? (
          <button type="button" onClick={() => setTurns([])} disabled={busy}>
            Clear conversation
          </button>
        ) : null}
      </aside>
      <section class="conversation">
        <ErrorBox message={models.error} />
        <div class="turns" data-testid="turns">
          {turns.length === 0 ? <p class="muted empty">Ask something. Enter sends, Shift+Enter adds a new line.</p> : null}
          {turns.map((turn, i) => (
            <TurnView key={i} turn={turn} />
          ))}
        </div>
        <div class="composer">
          <textarea
            rows={3}
            placeholder="Message (Enter sends, Shift+Enter new line)"
            value={input}
            onInput={(e) => setInput(e.currentTarget.value)}
            onKeyDown={onKeyDown}
            data-testid="prompt"
          />
          {busy ? (
            <button type="button" class="danger" onClick={() => abort.current?.abort()} data-testid="stop">
              Stop
            </button>
          ) : (
            <button type="button" class="primary" onClick={() => void send()} disabled={!input.trim() || !base} data-testid="send">
              Send
            </button>
          )}
        </div>
      </section>
    </div>
  );
}

function TurnView({ turn }: { turn: Turn }) {
  const [raw, setRaw] = useState(false);
  const origin = location.origin;
  return (
    <article class="turn" data-state={turn.state}>
      <div class="bubble user">{turn.question}</div>
      <div class="bubble assistant" data-testid="answer">
        {raw ? (
          <pre class="raw" data-testid="answer-raw">
            {turn.answer}
          </pre>
        ) : (
          <Markdown text={turn.answer} />
        )}
        {turn.state === "streaming" && !turn.answer ? <span class="muted">…</span> : null}
        <ErrorBox message={turn.error} />
      </div>
      <div class="answer-meta" data-testid="answer-meta">
        <span>{describeSet(turn.set)}</span>
        {turn.stats ? <Stats stats={turn.stats} /> : null}
        {turn.state === "stopped" ? <span class="badge">stopped</span> : null}
        <button type="button" class="link" onClick={() => setRaw(!raw)} data-testid="toggle-raw">
          {raw ? "rendered" : "raw"}
        </button>
        <CopyButton label="copy as curl" text={() => curlSnippet(turn.body, origin, storedApiKey() !== "")} />
        <CopyButton label="copy as openai-node" text={() => openaiNodeSnippet(turn.body, origin)} />
      </div>
    </article>
  );
}

export function Stats({ stats }: { stats: AnswerStats }) {
  return (
    <>
      <span title="time to first token">TTFT {stats.ttftMs === null ? "–" : `${Math.round(stats.ttftMs)} ms`}</span>
      <span>{stats.tokensPerSecond === null ? "– tok/s" : `${stats.tokensPerSecond.toFixed(1)} tok/s`}</span>
      <span>{stats.completionTokens ?? "–"} tokens</span>
      {stats.finishReason ? <span>finish: {stats.finishReason}</span> : null}
    </>
  );
}
