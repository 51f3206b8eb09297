import { useEffect, useState } from "preact/hooks";
import { errorText, getJson, type Session, storeApiKey, storedApiKey } from "./api";
import type { AdapterPick } from "./chat-request";
import { ErrorBox } from "./components";
import { AdaptersView } from "./views/adapters";
import { ChatView } from "./views/chat";
import { CompareView } from "./views/compare";
import { FinetuneView } from "./views/finetune";
import { ServerView } from "./views/server";

const VIEWS = ["chat", "compare", "adapters", "finetune", "server"] as const;
type View = (typeof VIEWS)[number];
const TITLES: Record<View, string> = { chat: "Chat", compare: "Compare", adapters: "Adapters", finetune: "Fine-tune", server: "Server" };

function viewOfHash(): View {
  const name = location.hash.replace(/^#\/?/, "");
  return (VIEWS as readonly string[]).includes(name) ? (name as View) : "chat";
}

/**
 * The shell: navigation (the URL hash names the view), the API key field, and the views. The views mount once
 * the key is accepted (GET /ui/session), so a missing or wrong key costs one rejected call, not one per view.
 * Views stay mounted when hidden, so a conversation or a running comparison survives switching; changing the
 * key remounts them.
 */
export function App() {
  const [view, setView] = useState<View>(viewOfHash);
  const [key, setKey] = useState(storedApiKey);
  const [draft, setDraft] = useState(key);
  // The session is kept with the key it was read for: a new key never renders views with the old key's role.
  const [checked, setChecked] = useState<{ key: string; session: Session } | null>(null);
  const session = checked?.key === key ? checked.session : null;
  const [sessionError, setSessionError] = useState<string | null>(null);
  const [preset, setPreset] = useState<AdapterPick[] | null>(null);

  useEffect(() => {
    const onHash = () => setView(viewOfHash());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  useEffect(() => {
    let live = true;
    setSessionError(null);
    getJson<Session>("/ui/session").then(
      (s) => {
        if (!live) return;
        setChecked({ key, session: s });
      },
      (e) => live && setSessionError(errorText(e)),
    );
    return () => {
      live = false;
    };
  }, [key]);

  const saveKey = (e: Event) => {
    e.preventDefault();
    storeApiKey(draft.trim());
    setKey(draft.trim());
  };

  const tryInChat = (set: AdapterPick[]) => {
    setPreset(set);
    location.hash = "#/chat";
  };

  return (
    <div class="app">
      <header class="topbar">
        <span class="brand">lori-server</span>
        <nav>
          {VIEWS.map((v) => (
            <a key={v} href={`#/${v}`} class={v === view ? "active" : undefined} aria-current={v === view ? "page" : undefined}>
              {TITLES[v]}
            </a>
          ))}
        </nav>
        <form class="key" onSubmit={saveKey}>
          <input
            type="password"
            placeholder="API key (if the server needs one)"
            value={draft}
            onInput={(e) => setDraft(e.currentTarget.value)}
            autocomplete="off"
            aria-label="API key"
            data-testid="api-key"
          />
          <button type="submit">Use key</button>
          {session ? (
            <span class="badge" data-testid="role">
              {session.role}
            </span>
          ) : null}
        </form>
      </header>
      <main key={key}>
        <div data-testid="session-error">
          <ErrorBox message={sessionError} />
        </div>
        {sessionError ? <p class="muted">Enter the server's API key above; it is kept in this browser's localStorage.</p> : null}
        {session ? (
          <>
            <div hidden={view !== "chat"} data-view="chat">
              <ChatView preset={preset} />
            </div>
            <div hidden={view !== "compare"} data-view="compare">
              <CompareView />
            </div>
            <div hidden={view !== "adapters"} data-view="adapters">
              <AdaptersView admin={session.role === "admin"} onTry={tryInChat} />
            </div>
            <div hidden={view !== "finetune"} data-view="finetune">
              <FinetuneView allowed={session.train} active={view === "finetune"} onTry={tryInChat} />
            </div>
            <div hidden={view !== "server"} data-view="server">
              <ServerView active={view === "server"} />
            </div>
          </>
        ) : null}
      </main>
    </div>
  );
}
