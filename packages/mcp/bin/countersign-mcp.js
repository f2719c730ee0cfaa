#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx, like the `countersign` binary.
import { register } from 'tsx/esm/api';

register();
const { mcpProgram } = await import('../src/cli.ts');
await mcpProgram().parseAsync(process.argv);
