import { useEffect, useState } from "preact/hooks";
import { errorText, getJson, type ModelObject } from "./api";

/** Fired after the adapter store changes (merge, upload, delete), so every view's lists refresh. */
export const ADAPTERS_CHANGED = "lori:adapters-changed";

export function announceAdaptersChanged(): void {
  window.dispatchEvent(new Event(ADAPTERS_CHANGED));
}

export interface ModelLists {
  bases: ModelObject[];
  adapters: ModelObject[];
  error: string | null;
}

/** Base models and adapters from /v1/models, refreshed when the store changes. */
export function useModels(): ModelLists {
  const [lists, setLists] = useState<ModelLists>({ bases: [], adapters: [], error: null });
  useEffect(() => {
    let live = true;
    const load = () =>
      getJson<{ data: ModelObject[] }>("/v1/models").then(
        ({ data }) => live && setLists({ bases: data.filter((m) => !m.lori), adapters: data.filter((m) => m.lori), error: null }),
        (error) => live && setLists({ bases: [], adapters: [], error: errorText(error) }),
      );
    void load();
    window.addEventListener(ADAPTERS_CHANGED, load);
    return () => {
      live = false;
      window.removeEventListener(ADAPTERS_CHANGED, load);
    };
  }, []);
  return lists;
}
