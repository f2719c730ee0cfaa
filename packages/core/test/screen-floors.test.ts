/**
 * Floors for the grouped-fold evaluation (`npm run eval:screen`): each scheme retrains without
 * the held-out groups and scores them, exactly as the evaluation does. A change that drops a
 * number under its floor fails here. Floors sit a little under the measured values in
 * BENCHMARKS.md (noise from retraining is nil: training is deterministic).
 *
 * This is the slow test of the suite (about 2 CPU-minutes): every fold is a full retrain.
 */
import { describe, expect, it } from 'vitest';
import { loadDocs } from '../../../tools/screen/data.ts';
import { EVAL_FLOORS, EVAL_THRESHOLD, perSet, recallAtFpr, runScheme, schemes } from '../../../tools/screen/eval-lib.ts';

const THRESHOLD = EVAL_THRESHOLD;
const FLOORS = EVAL_FLOORS;

describe('grouped-fold floors', () => {
  const docs = loadDocs();
  for (const scheme of schemes(docs)) {
    it(scheme.name, () => {
      const floors = FLOORS[scheme.name];
      expect(floors, `no floors for ${scheme.name}`).toBeDefined();
      const result = runScheme(docs, scheme);
      const measured = new Map(perSet(result, THRESHOLD).map((m) => [m.set, m]));
      for (const [set, floor] of Object.entries(floors!)) {
        const m = measured.get(set);
        expect(m, `${set} not measured`).toBeDefined();
        if (floor.recall !== undefined) expect(m!.value, `${set} recall`).toBeGreaterThanOrEqual(floor.recall);
        if (floor.fpr !== undefined) expect(m!.value, `${set} FPR`).toBeLessThanOrEqual(floor.fpr);
      }
      if (scheme.name.startsWith('InjecAgent: leave tools')) {
        // The target: recall at ≤ 2 % FPR on benign outputs of tools the model never saw.
        const isIA = (set: string): boolean => set === 'injecagent-base' || set === 'injecagent-enhanced';
        const at = recallAtFpr(result, (d) => d.set === 'injecagent-benign', (d) => isIA(d.set), 0.02);
        expect(at.recall).toBeGreaterThanOrEqual(0.95);
      }
    }, 900_000);
  }
});
