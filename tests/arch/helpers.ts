import type { GgufFile } from "../../src/gguf/gguf-types.js";
import { architectureLayout, baseTensorName } from "../../src/lora/architectures.js";
import { ggufArchitecture } from "../../src/lora/base-fingerprint.js";
import type { TargetModule } from "../../src/lora/target-modules.js";
import type { ModuleShape } from "../lora/peft-fixtures.js";

/** Every adaptable module of a base of any supported architecture, shapes from its header (ne = [in, out]). */
export function adaptableShapesOfGguf(header: GgufFile, only?: (module: TargetModule) => boolean): ModuleShape[] {
  const layout = architectureLayout(ggufArchitecture(header));
  const byName = new Map(header.tensors.map((t) => [t.name, t.shape]));
  const shapes: ModuleShape[] = [];
  for (let layer = 0; byName.has(`blk.${layer}.attn_norm.weight`); layer++) {
    for (const module of Object.keys(layout.modules) as TargetModule[]) {
      if (only && !only(module)) continue;
      const shape = byName.get(baseTensorName(layout, layer, module));
      if (!shape) throw new Error(`the base has no tensor for layer ${layer} ${module}`);
      shapes.push({ layer, module, inFeatures: shape[0]!, outFeatures: shape[1]! });
    }
  }
  return shapes;
}
