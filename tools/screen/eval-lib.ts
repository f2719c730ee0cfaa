/** The grouped-fold evaluation moved to core (`packages/core/src/screen/evaluate.ts`) so the retrain's gate runs the same code; re-exported for the tools. */
export * from '../../packages/core/src/screen/evaluate.ts';
