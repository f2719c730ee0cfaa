/** Training moved to core (`packages/core/src/screen/train.ts`) so the server's retrain runs the same code; re-exported for the tools. */
export * from '../../packages/core/src/screen/train.ts';
