import type { ServedModel } from "./served-model.js";

/** The served base models by id; the first one is the default for requests that name none. */
export class ModelRegistry {
  private readonly byId = new Map<string, ServedModel>();

  add(model: ServedModel): void {
    if (this.byId.has(model.spec.id)) throw new Error(`two models share the id '${model.spec.id}'`);
    this.byId.set(model.spec.id, model);
  }

  get(id: string | undefined): ServedModel | undefined {
    if (id === undefined) return this.byId.values().next().value;
    return this.byId.get(id);
  }

  list(): ServedModel[] {
    return [...this.byId.values()];
  }

  get size(): number {
    return this.byId.size;
  }

  async dispose(): Promise<void> {
    for (const model of this.byId.values()) await model.dispose();
    this.byId.clear();
  }
}
