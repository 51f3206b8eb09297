/** The settings of `npm run demo:build`: the demo profile (committed results) and a CI smoke profile. */
export interface DemoProfile {
  readonly name: "demo" | "smoke";
  /** Seed of the random init, the base corpus and the data order; adapter seeds derive from it. */
  readonly seed: number;
  readonly base: { readonly layers: number; readonly embd: number; readonly heads: number; readonly kvHeads: number; readonly ff: number };
  readonly pretrain: {
    readonly records: number;
    readonly steps: number;
    readonly batch: number;
    readonly lr: number;
    readonly valFraction: number;
  };
  /** Seed of the task training data (`eval --write-data --seed`). */
  readonly dataSeed: number;
  /** Seed of the test split the report scores (`eval --seed`); train and test never share a prompt. */
  readonly evalSeed: number;
  /** `eval --limit`; 0 = each task's default test size. */
  readonly evalLimit: number;
  readonly adapter: {
    /** Task examples; a completion task's adapter trains on each in both forms (2 x trainSize records). */
    readonly trainSize: number;
    readonly rank: number;
    readonly sparsity: number;
    /** Steps per `trainSize` records: an adapter trained on both forms (2 x trainSize records) gets twice as many. */
    readonly steps: number;
    readonly batch: number;
    /** LoRI-S trains ~10 % of B, so it gets a larger learning rate than its LoRI-D calibration phase. */
    readonly lr: number;
    readonly calibrateLr: number;
  };
}

export const DEMO_PROFILES: Readonly<Record<DemoProfile["name"], DemoProfile>> = {
  demo: {
    name: "demo",
    seed: 1,
    base: { layers: 4, embd: 128, heads: 4, kvHeads: 2, ff: 352 },
    pretrain: { records: 20_000, steps: 1200, batch: 16, lr: 2e-3, valFraction: 0.02 },
    dataSeed: 0,
    evalSeed: 0,
    evalLimit: 0,
    adapter: { trainSize: 350, rank: 16, sparsity: 0.9, steps: 200, batch: 8, lr: 1e-2, calibrateLr: 1e-3 },
  },
  smoke: {
    name: "smoke",
    seed: 1,
    base: { layers: 1, embd: 32, heads: 2, kvHeads: 1, ff: 64 },
    pretrain: { records: 40, steps: 3, batch: 4, lr: 2e-3, valFraction: 0.1 },
    dataSeed: 0,
    evalSeed: 0,
    evalLimit: 2,
    adapter: { trainSize: 20, rank: 4, sparsity: 0.9, steps: 2, batch: 2, lr: 1e-2, calibrateLr: 1e-3 },
  },
};
