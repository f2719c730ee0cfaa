/** The seeded PRNG lives in core (training uses it); re-exported for the synthesis here. */
export { mulberry32, pick, shuffle } from '../../packages/core/src/screen/prng.ts';
