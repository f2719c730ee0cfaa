/**
 * `npm run eval:screen`: grouped-fold evaluation of the screen models and throughput, printed
 * as the Markdown that goes in BENCHMARKS.md. `--quick` skips the throughput runs.
 */
import { arch, cpus, platform } from 'node:os';
import { fileURLToPath } from 'node:url';
import { DEFAULT_SCREEN_MODEL, resolveScreening, screen } from '../../packages/core/src/screen/index.ts';
import { loadDocs, type Doc } from './data.ts';
import { PARETO_THRESHOLDS, balancedAccuracy, perSet, recallAtFpr, runScheme, schemes, type SchemeResult } from './eval-lib.ts';

const OPERATING = resolveScreening({}).findingsFrom.user;

function pct(x: number): string {
  return `${(100 * x).toFixed(1)}`;
}

function schemeTable(r: SchemeResult): string[] {
  const sets = perSet(r, OPERATING);
  const lines = [`#### ${r.scheme} (${r.channel} model)`, ''];
  lines.push(`At the default threshold (score ≥ ${OPERATING}, i.e. anything but \`allow\`):`, '');
  lines.push('| set | n | recall % | FPR % |', '| --- | ---: | ---: | ---: |');
  for (const s of sets) lines.push(`| ${s.set} | ${s.n} | ${s.kind === 'recall' ? pct(s.value) : ''} | ${s.kind === 'fpr' ? pct(s.value) : ''} |`);
  lines.push('', 'Pareto (threshold → recall on attack sets / FPR on benign sets, %):', '');
  const names = sets.map((s) => `${s.set} ${s.kind === 'recall' ? 'R' : 'FPR'}`);
  lines.push(`| threshold | ${names.join(' | ')} |`, `| ---: | ${names.map(() => '---:').join(' | ')} |`);
  for (const t of PARETO_THRESHOLDS) lines.push(`| ${t} | ${perSet(r, t).map((s) => pct(s.value)).join(' | ')} |`);
  lines.push('');
  return lines;
}

function throughput(): string[] {
  const docs = loadDocs();
  const config = resolveScreening({ maxBytes: 16 * 1024 * 1024 });
  const target = 8 * 1024 * 1024;
  const build = (parts: string[], sep: string): string => {
    const out: string[] = [];
    let n = 0;
    for (let i = 0; n < target; i++) {
      const p = parts[i % parts.length] as string;
      out.push(p);
      n += p.length + sep.length;
    }
    return out.join(sep);
  };
  const userText = build(docs.filter((d) => d.channel === 'user').map((d) => d.text), '\n');
  const prose = build(docs.filter((d) => d.set === 'bipia-email').map((d) => d.text), '\n\n');
  const json = `[${build(docs.filter((d) => d.set === 'injecagent-benign').map((d) => d.text), ',')}]`;
  const rows: string[] = ['| input | MB | CPU s | MB/s (CPU) | wall s |', '| --- | ---: | ---: | ---: | ---: |'];
  for (const [name, text, channel] of [
    ['user prompts (one 8 MB text)', userText, 'user'],
    ['emails as content prose (8 MB)', prose, 'content'],
    ['tool outputs as one JSON array (8 MB)', json, 'content'],
  ] as const) {
    const mb = Buffer.byteLength(text) / 1e6;
    screen({ text: text.slice(0, 100_000), channel }, DEFAULT_SCREEN_MODEL, config); // warm-up
    // CPU time, not wall time: the machine is shared, and one screen() call runs on one core.
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    screen(channel === 'user' ? { text, channel } : { content: text, channel }, DEFAULT_SCREEN_MODEL, config);
    const wall = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    const cpu = (c.user + c.system) / 1e6;
    rows.push(`| ${name} | ${mb.toFixed(1)} | ${cpu.toFixed(2)} | ${(mb / cpu).toFixed(1)} | ${wall.toFixed(2)} |`);
  }
  return rows;
}

export function main(argv: readonly string[]): void {
  const started = performance.now();
  const docs = loadDocs();
  const lines: string[] = [];
  const results = schemes(docs).map((s) => runScheme(docs, s));
  const get = (name: string): SchemeResult => results.find((r) => r.scheme.startsWith(name)) as SchemeResult;
  const isIA = (d: Doc): boolean => d.set === 'injecagent-base' || d.set === 'injecagent-enhanced';
  const tools = get('InjecAgent: leave tools');
  const at2 = recallAtFpr(tools, (d) => d.set === 'injecagent-benign', isIA, 0.02);
  const instr = get('InjecAgent: leave attacker');
  const deepset = get('deepset');
  const ni = [get('NotInject: across'), get('NotInject: leave')];
  lines.push('### Targets', '');
  lines.push('| target | measured | where |', '| --- | ---: | --- |');
  lines.push(`| deepset balanced accuracy ≥ 0.95 | ${balancedAccuracy(deepset, OPERATING).toFixed(3)} | 5 folds, threshold ${OPERATING} |`);
  for (const r of ni) lines.push(`| NotInject accuracy ≥ 0.90 | ${(1 - (perSet(r, OPERATING)[0]?.value ?? 0)).toFixed(3)} | ${r.scheme} |`);
  lines.push(`| InjecAgent recall ≥ 0.80 at ≤ 2 % FPR, unseen tools | ${at2.recall.toFixed(3)} (FPR ${pct(at2.fpr)} %, threshold ${at2.threshold.toFixed(3)}) | leave tools out |`);
  const instrSets = perSet(instr, OPERATING).map((s) => `${s.set} ${pct(s.value)} %`).join(', ');
  lines.push(`| InjecAgent, unseen attacker instructions | ${instrSets} | threshold ${OPERATING} |`);
  lines.push('');
  for (const r of results) lines.push(...schemeTable(r));
  if (!argv.includes('--quick')) lines.push('### Throughput (one core, `screen()` end to end)', '', ...throughput(), '');
  lines.push(`Machine: ${cpus()[0]?.model ?? 'unknown'} (${cpus().length} cores, shared), ${platform()} ${arch()}, Node ${process.version}. Evaluation took ${((performance.now() - started) / 1000).toFixed(0)} s.`);
  console.log(lines.join('\n'));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main(process.argv.slice(2));
